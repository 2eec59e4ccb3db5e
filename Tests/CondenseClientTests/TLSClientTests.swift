import CondenseClient
import CondenseCoordinator
import CondenseRPC
import CondenseWire
import CondenseWorker
import Foundation
import Testing

/// Test certificates made by scripts/gen-tls-fixtures.sh, once per test process, in a temporary directory.
enum ClientTLSFixtures {
    static let directory: String? = {
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard searchPath.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/openssl") })
        else { return nil }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-client-tls-\(UUID().uuidString)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Fixtures.packageRoot.appendingPathComponent("scripts/gen-tls-fixtures.sh").path, directory]
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        return process.terminationStatus == 0 ? directory : nil
    }()

    static func path(_ name: String) -> String { "\(directory ?? "/nonexistent")/\(name)" }
}

extension ClientSuites {
    @Suite(
        "CondenseClient over TLS",
        .enabled(if: ClientTLSFixtures.directory != nil, "openssl not found: the TLS test certificates cannot be generated"))
    struct TLSClientTests {
        /// A TLS coordinator with an embedding worker that dials it over TLS too: the client's vectors
        /// are the local embedder's, and a plaintext client is refused naming TLS.
        @Test(.enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
        func embedsThroughATLSCoordinatorAndWorker() async throws {
            let embedder = try #require(Fixtures.tinyEmbedder)
            let texts = Fixtures.texts(20)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 8)

            let stateDirectory = FileManager.default.temporaryDirectory
                .appendingPathComponent("condense-client-tls-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: stateDirectory) }
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            let service = CoordinatorService(settings: CoordinatorSettings(batchTexts: 8), fineTune: fineTune, logger: quietLogger)
            let serverTLS = try RPCServerTLS(
                certificateChainFile: ClientTLSFixtures.path("server.pem"), privateKeyFile: ClientTLSFixtures.path("server.key"))
            let server = RPCServer(
                configuration: .init(authToken: "s3cret", shutdownGracePeriod: .milliseconds(500), tls: serverTLS),
                services: [service], logger: quietLogger)
            let port = try await server.start()
            let monitor = Task { await service.monitorHeartbeats() }

            // The worker trusts the CA and checks the certificate's DNS name while dialling the IP address.
            let worker = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(
                    connection: CoordinatorConnection(
                        host: "127.0.0.1", port: port, workerID: "tls-worker", authToken: "s3cret",
                        tls: try RPCClientTLS(trustedCertificatesFile: ClientTLSFixtures.path("ca.pem"), serverName: "localhost"),
                        heartbeatInterval: .milliseconds(100))),
                embedder: embedder, modelID: "tiny-llama", logger: quietLogger)
            let workerTask = Task { try? await worker.run() }
            for _ in 0..<1000 {
                if await service.embeddingWorkerCount > 0 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(await service.embeddingWorkerCount == 1)

            let client = CondenseClient(
                host: "127.0.0.1", port: port, authToken: "s3cret", tls: try CondenseClient.TLS(caFile: ClientTLSFixtures.path("ca.pem")),
                logger: quietLogger)
            let embeddings = try await client.embed(texts)
            #expect(embeddings.results.count == texts.count)
            for (index, result) in embeddings.results.enumerated() {
                guard case .success(let vector) = result, case .success(let reference) = expected[index] else {
                    Issue.record("item \(index): \(result), locally \(expected[index])")
                    continue
                }
                #expect(bits(vector) == bits(reference), "vector \(index) differs from the local run")
            }
            await client.close()

            let plaintext = CondenseClient(host: "127.0.0.1", port: port, authToken: "s3cret", logger: quietLogger)
            do {
                _ = try await plaintext.health()
                Issue.record("a plaintext client was served by a TLS server")
            } catch {
                #expect(error.code == .unavailable)
                #expect(error.message.contains("requires TLS"))
            }
            await plaintext.close()

            workerTask.cancel()
            monitor.cancel()
            try await server.stop()
        }

        @Test func unusableSettingsAreInvalidArguments() throws {
            let missing = ClientTLSFixtures.path("missing.pem")
            #expect(throws: CondenseClientError(code: .invalidArgument, message: "cannot read the TLS CA certificate file \(missing)")) {
                _ = try CondenseClient.TLS(caFile: missing)
            }
            #expect(throws: CondenseClientError.self) { _ = try CondenseClient.TLS(serverName: "192.168.1.1") }
        }
    }
}
