import ArgumentParser
import CondenseRPC
import Logging

/// `--metrics-listen HOST:PORT`: the operations port (`/healthz`, `/readyz`, Prometheus `/metrics`)
/// of `coordinator`, `serve` and the workers. Off by default.
struct OperationsOptions: ParsableArguments {
    @Option(help: "Plain HTTP address for /healthz, /readyz and Prometheus /metrics, HOST:PORT (port 0 picks a free one, logged). Default: off.")
    var metricsListen: HostPort?

    /// Call counters for the RPC server; nil without `--metrics-listen`, so that calls record nothing.
    func makeRPCMetrics() -> RPCServerMetrics? {
        metricsListen == nil ? nil : RPCServerMetrics()
    }

    /// Starts the operations port when `--metrics-listen` was given; `rpc`'s families come first.
    func start(
        rpc: RPCServerMetrics? = nil, readiness: @escaping @Sendable () async -> Readiness, metrics: [MetricsCollector],
        logger: Logger
    ) async throws -> OperationsServer? {
        guard let metricsListen else { return nil }
        let collectors: [MetricsCollector] = (rpc.map { rpc in [{ await rpc.collect() }] } ?? []) + metrics
        let server = OperationsServer(
            host: metricsListen.host, port: metricsListen.port, readiness: readiness, metrics: collectors, logger: logger)
        do {
            try await server.start()
        } catch {
            throw CLIFailure("cannot listen on --metrics-listen \(metricsListen): \(error)")
        }
        return server
    }
}
