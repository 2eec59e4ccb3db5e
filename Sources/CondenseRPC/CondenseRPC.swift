// CondenseRPC module.
