import CondenseRPC
import CondenseWire
import Foundation
import Testing

/// Transport throughput on loopback, printed for the record; only runs with CONDENSE_RPC_BENCH=1
/// (e.g. `CONDENSE_RPC_BENCH=1 swift test -c release --filter RPCThroughput`). Asserts counts, not speed.
@Suite("RPC throughput", .enabled(if: ProcessInfo.processInfo.environment["CONDENSE_RPC_BENCH"] == "1"))
struct RPCThroughputTests {
    private func rate(_ count: Int, _ elapsed: Duration) -> Int {
        Int(Double(count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
    }

    @Test func unaryAndStreamingThroughput() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let clock = ContinuousClock()
            let request = TestText(String(repeating: "x", count: 100))

            let sequentialCalls = 5_000
            var start = clock.now
            for _ in 0..<sequentialCalls {
                #expect(try await client.unary("/test.Echo/Unary", request: request, responseType: TestText.self) == request)
            }
            print("sequential unary, 100 B: \(rate(sequentialCalls, clock.now - start)) calls/s")

            let tasks = 100
            let callsPerTask = 200
            start = clock.now
            let completed = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<tasks {
                    group.addTask {
                        for _ in 0..<callsPerTask {
                            _ = try await client.unary("/test.Echo/Unary", request: request, responseType: TestText.self)
                        }
                        return callsPerTask
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(completed == tasks * callsPerTask)
            print("concurrent unary, \(tasks) tasks on one connection: \(rate(completed, clock.now - start)) calls/s")

            let messages = 200_000
            start = clock.now
            let received = try await client.serverStreaming(
                "/test.Echo/Count", request: TestNumber(UInt64(messages)), responseType: TestNumber.self
            ) { responses in
                var count = 0
                for try await _ in responses { count += 1 }
                return count
            }
            #expect(received == messages)
            print("server streaming, 8 B messages: \(rate(received, clock.now - start)) messages/s")
            await client.close()
        }
    }
}
