// CondenseServer module.
