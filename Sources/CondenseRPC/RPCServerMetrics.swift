import CondenseWire
import NIOConcurrencyHelpers
import NIOCore

/// Calls, status codes and latencies of an `RPCServer`, for the operations port.
///
/// Recording takes no lock: each event loop has its own table, which the connections on that loop
/// update from the loop (where the call's frames are handled anyway). A scrape visits every loop
/// and merges the tables, so the cost sits with the scraper. A server given no `RPCServerMetrics`
/// records nothing.
public final class RPCServerMetrics: Sendable {
    /// Latency bucket bounds in seconds: from a cached unary call to a long EmbedStream.
    public static let latencyBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
    /// The method label of calls to paths no service registered (clients choose those freely).
    public static let unknownMethod = "unknown"

    private struct LoopTable: Sendable {
        let loop: any EventLoop
        let table: NIOLoopBound<CallTable>
    }

    /// One table per event loop, keyed by the loop's identity; the lock is taken once per connection.
    private let tables = NIOLockedValueBox<[ObjectIdentifier: LoopTable]>([:])

    public init() {}

    /// The table of `loop`, made on first use. Call on `loop`.
    func table(on loop: any EventLoop) -> CallTable {
        tables.withLockedValue { tables in
            if let existing = tables[ObjectIdentifier(loop)] { return existing.table }
            let created = NIOLoopBound(CallTable(), eventLoop: loop)
            tables[ObjectIdentifier(loop)] = LoopTable(loop: loop, table: created)
            return created
        }.value
    }

    /// The counters of every loop, merged.
    public func snapshot() async -> CallCounts {
        let tables = self.tables.withLockedValue { Array($0.values) }
        var total = CallCounts()
        for entry in tables {
            // A loop that has shut down holds no live calls; its counts are lost with it.
            guard let counts = try? await entry.loop.submit({ entry.table.value.counts }).get() else { continue }
            total.add(counts)
        }
        return total
    }

    /// `condense_rpc_requests_total`, `condense_rpc_request_duration_seconds`, `condense_rpc_in_flight_requests`.
    public func collect() async -> [MetricFamily] {
        let counts = await snapshot()
        let methods = counts.methods.keys.sorted()
        var requests: [MetricSample] = []
        var latencies: [MetricSample] = []
        for method in methods {
            guard let entry = counts.methods[method] else { continue }
            for (code, count) in entry.byCode.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                requests.append(MetricSample(
                    Double(count), labels: [MetricLabel("method", method), MetricLabel("code", code.description)]))
            }
            if entry.latency.count > 0 {
                latencies += entry.latency.samples(bounds: Self.latencyBounds, labels: [MetricLabel("method", method)])
            }
        }
        return [
            MetricFamily(
                name: "condense_rpc_requests_total",
                help: "RPC calls ended, by method and status code (calls refused before a handler ran included).",
                kind: .counter, samples: requests),
            MetricFamily(
                name: "condense_rpc_request_duration_seconds",
                help: "Time from a call's HEADERS to its TRAILERS, for calls that ran a handler.",
                kind: .histogram, samples: latencies),
            .gauge("condense_rpc_in_flight_requests", help: "RPC calls whose handler is running now.", Double(counts.inFlight)),
        ]
    }
}

/// Counters of calls, merged over event loops.
public struct CallCounts: Sendable, Equatable {
    public struct Method: Sendable, Equatable {
        public var byCode: [StatusCode: UInt64] = [:]
        public var latency = HistogramCounts(bucketCount: RPCServerMetrics.latencyBounds.count)

        /// One ended call; `seconds` is nil for a call refused before a handler ran.
        mutating func record(_ code: StatusCode, seconds: Double?) {
            byCode[code, default: 0] += 1
            if let seconds { latency.observe(seconds, bounds: RPCServerMetrics.latencyBounds) }
        }
    }

    public var methods: [String: Method] = [:]
    public var inFlight = 0

    /// Calls of `method` that ended with `code`.
    public func count(_ method: String, _ code: StatusCode) -> UInt64 { methods[method]?.byCode[code] ?? 0 }

    mutating func add(_ other: CallCounts) {
        inFlight += other.inFlight
        for (method, entry) in other.methods {
            var merged = methods[method] ?? Method()
            merged.byCode.merge(entry.byCode, uniquingKeysWith: +)
            merged.latency.add(entry.latency)
            methods[method] = merged
        }
    }
}

/// The calls of one event loop. Loop-confined: only touched from its loop.
final class CallTable {
    private(set) var counts = CallCounts()

    func started() { counts.inFlight += 1 }

    /// A call that ran a handler ended after `seconds`.
    func finished(_ method: String, _ code: StatusCode, seconds: Double) {
        counts.inFlight -= 1
        counts.methods[method, default: CallCounts.Method()].record(code, seconds: seconds)
    }

    /// A call answered without running a handler (unknown method, no credentials, too many calls, shutdown).
    func refused(_ method: String, _ code: StatusCode) {
        counts.methods[method, default: CallCounts.Method()].record(code, seconds: nil)
    }
}
