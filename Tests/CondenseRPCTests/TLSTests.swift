import CondenseRPC
import CondenseWire
import Foundation
import NIOCore
import NIOPosix
import Testing

/// Test certificates made by scripts/gen-tls-fixtures.sh, once per test process, in a temporary directory.
enum TLSFixtures {
    static let directory: String? = {
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard searchPath.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/openssl") })
        else { return nil }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/gen-tls-fixtures.sh").path
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-tls-\(UUID().uuidString)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, directory]
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        return process.terminationStatus == 0 ? directory : nil
    }()

    static func path(_ name: String) -> String { "\(directory ?? "/nonexistent")/\(name)" }

    /// The server certificate signed by the test CA, for localhost and 127.0.0.1.
    static func serverTLS() throws -> RPCServerTLS {
        try RPCServerTLS(certificateChainFile: path("server.pem"), privateKeyFile: path("server.key"))
    }

    /// A client trusting the test CA.
    static func clientTLS(serverName: String? = nil) throws -> RPCClientTLS {
        try RPCClientTLS(trustedCertificatesFile: path("ca.pem"), serverName: serverName)
    }
}

/// The RPCError `body` threw; fails the test when it threw nothing or something else.
private func rpcError(_ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> RPCError? {
    do {
        try await body()
        Issue.record("expected an RPCError", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        return error
    } catch {
        Issue.record("expected an RPCError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite(
    "RPC over TLS",
    .enabled(if: TLSFixtures.directory != nil, "openssl not found: the TLS test certificates cannot be generated"))
struct TLSTests {
    private func tlsConfiguration(authToken: String? = nil) throws -> RPCServer.Configuration {
        RPCServer.Configuration(authToken: authToken, shutdownGracePeriod: .seconds(2), tls: try TLSFixtures.serverTLS())
    }

    @Test func unaryAndStreamingCallsWithAnAuthToken() async throws {
        try await withServer(try tlsConfiguration(authToken: "s3cret")) { _, port in
            let client = try await RPCClient.connect(
                host: "127.0.0.1", port: port, authToken: "s3cret", tls: try TLSFixtures.clientTLS(), logger: quietLogger)
            let echoed = try await client.unary("/test.Echo/Unary", request: TestText("héllo"), responseType: TestText.self)
            #expect(echoed == TestText("héllo"))
            let counted = try await client.serverStreaming(
                "/test.Echo/Count", request: TestNumber(300), responseType: TestNumber.self
            ) { responses in
                var values: [UInt64] = []
                for try await number in responses { values.append(number.value) }
                return values
            }
            #expect(counted == Array(0..<300))
            let upper = try await client.bidirectional(
                "/test.Echo/Upper", requestType: TestText.self, responseType: TestText.self,
                sendRequests: { writer in for word in ["a", "bc", "déf"] { try await writer.write(TestText(word)) } },
                handleResponses: { responses in
                    var texts: [String] = []
                    for try await response in responses { texts.append(response.text) }
                    return texts
                })
            #expect(upper == ["A", "BC", "DÉF"])
            await client.close()

            // The token is still checked inside TLS.
            let anonymous = try await RPCClient.connect(
                host: "127.0.0.1", port: port, tls: try TLSFixtures.clientTLS(), logger: quietLogger)
            let refused = await rpcError { _ = try await anonymous.unary("/test.Echo/Unary", request: TestText("x"), responseType: TestText.self) }
            #expect(refused?.code == .unauthenticated)
            await anonymous.close()
        }
    }

    /// The self-signed certificate names only `localhost`: dialling 127.0.0.1 needs the server name.
    @Test func theCertificateNameCanDifferFromTheAddress() async throws {
        let tls = try RPCServerTLS(
            certificateChainFile: TLSFixtures.path("self-signed.pem"), privateKeyFile: TLSFixtures.path("self-signed.key"))
        let trustFile = TLSFixtures.path("self-signed.pem")
        try await withServer(RPCServer.Configuration(shutdownGracePeriod: .seconds(2), tls: tls)) { _, port in
            let named = try await RPCClient.connect(
                host: "127.0.0.1", port: port, tls: try RPCClientTLS(trustedCertificatesFile: trustFile, serverName: "localhost"),
                logger: quietLogger)
            #expect(try await named.unary("/test.Echo/Unary", request: TestText("n"), responseType: TestText.self) == TestText("n"))
            await named.close()

            for (serverName, shown) in [("db.example.org", "db.example.org"), (nil, "127.0.0.1")] {
                let wrongName = await rpcError {
                    _ = try await RPCClient.connect(
                        host: "127.0.0.1", port: port, tls: try RPCClientTLS(trustedCertificatesFile: trustFile, serverName: serverName),
                        logger: quietLogger)
                }
                #expect(wrongName?.code == .unavailable)
                #expect(wrongName?.message.contains("not valid for '\(shown)'") == true, "\(String(describing: wrongName))")
            }
        }
    }

    @Test func aPlaintextClientIsToldToUseTLSAndTheServerKeepsServing() async throws {
        try await withServer(try tlsConfiguration()) { _, port in
            let plaintext = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let refused = await rpcError {
                _ = try await plaintext.unary("/test.Echo/Unary", request: TestText("x"), responseType: TestText.self)
            }
            #expect(refused?.code == .unavailable)
            #expect(refused?.message.contains("requires TLS") == true)
            await plaintext.close()

            let client = try await RPCClient.connect(
                host: "127.0.0.1", port: port, tls: try TLSFixtures.clientTLS(), logger: quietLogger)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("ok"), responseType: TestText.self) == TestText("ok"))
            await client.close()
        }
    }

    @Test func aTLSClientOfAPlaintextServerFailsNamingTLS() async throws {
        try await withServer { _, port in
            let failure = await rpcError {
                _ = try await RPCClient.connect(host: "127.0.0.1", port: port, tls: try TLSFixtures.clientTLS(), logger: quietLogger)
            }
            #expect(failure?.code == .unavailable)
            #expect(failure?.message.contains("does not speak TLS") == true)
        }
    }

    @Test func anUntrustedCertificateIsRefusedAndTheServerKeepsServing() async throws {
        try await withServer(try tlsConfiguration()) { _, port in
            for untrusting in [
                try RPCClientTLS(trustedCertificatesFile: TLSFixtures.path("other-ca.pem")),
                try RPCClientTLS(),  // system trust roots: the test CA is not among them
            ] {
                let failure = await rpcError {
                    _ = try await RPCClient.connect(host: "127.0.0.1", port: port, tls: untrusting, logger: quietLogger)
                }
                #expect(failure?.code == .unavailable)
                #expect(failure?.message.contains("TLS certificate is not trusted") == true)
            }
            let client = try await RPCClient.connect(
                host: "127.0.0.1", port: port, tls: try TLSFixtures.clientTLS(), logger: quietLogger)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("ok"), responseType: TestText.self) == TestText("ok"))
            await client.close()
        }
    }

    /// A self-signed certificate is trusted by passing itself as the CA file.
    @Test func aSelfSignedCertificateTrustedAsItsOwnCA() async throws {
        let tls = try RPCServerTLS(
            certificateChainFile: TLSFixtures.path("self-signed.pem"), privateKeyFile: TLSFixtures.path("self-signed.key"))
        try await withServer(RPCServer.Configuration(shutdownGracePeriod: .seconds(2), tls: tls)) { _, port in
            let client = try await RPCClient.connect(
                host: "localhost", port: port,
                tls: try RPCClientTLS(trustedCertificatesFile: TLSFixtures.path("self-signed.pem")), logger: quietLogger)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("s"), responseType: TestText.self) == TestText("s"))
            await client.close()
        }
    }

    /// `loopbackClientTLS` accepts exactly its server's certificate, whatever name or CA.
    @Test func theLoopbackClientPinsItsServersCertificate() async throws {
        let serverTLS = try TLSFixtures.serverTLS()
        let other = try RPCServerTLS(
            certificateChainFile: TLSFixtures.path("self-signed.pem"), privateKeyFile: TLSFixtures.path("self-signed.key"))
        try await withServer(RPCServer.Configuration(shutdownGracePeriod: .seconds(2), tls: serverTLS)) { _, port in
            let client = try await RPCClient.connect(
                host: "127.0.0.1", port: port, tls: serverTLS.loopbackClientTLS, logger: quietLogger)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("l"), responseType: TestText.self) == TestText("l"))
            await client.close()

            let failure = await rpcError {
                _ = try await RPCClient.connect(host: "127.0.0.1", port: port, tls: other.loopbackClientTLS, logger: quietLogger)
            }
            #expect(failure?.code == .unavailable)
            #expect(failure?.message.contains("TLS certificate is not trusted") == true)
        }
    }

    /// A peer that accepts the connection and never answers the handshake fails the connect, not hangs it.
    @Test func aSilentPeerFailsTheHandshakeAfterItsTimeout() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        var tls = try TLSFixtures.clientTLS()
        tls.handshakeTimeout = .milliseconds(200)
        let failure = await rpcError {
            _ = try await RPCClient.connect(host: "127.0.0.1", port: silent.localAddress?.port ?? 0, tls: tls, logger: quietLogger)
        }
        #expect(failure?.code == .unavailable)
        #expect(failure?.message.contains("no TLS handshake") == true)
        try await silent.close()
    }

    @Test func unusableFilesAreReportedByName() throws {
        let missing = TLSFixtures.path("missing.pem")
        #expect(throws: RPCTLSError.unreadableFile(role: "certificate", path: missing)) {
            _ = try RPCServerTLS(certificateChainFile: missing, privateKeyFile: TLSFixtures.path("server.key"))
        }
        #expect(throws: RPCTLSError.unreadableFile(role: "private key", path: missing)) {
            _ = try RPCServerTLS(certificateChainFile: TLSFixtures.path("server.pem"), privateKeyFile: missing)
        }
        #expect(throws: RPCTLSError.keyDoesNotMatchCertificate(
            certificatePath: TLSFixtures.path("server.pem"), keyPath: TLSFixtures.path("self-signed.key"))) {
            _ = try RPCServerTLS(
                certificateChainFile: TLSFixtures.path("server.pem"), privateKeyFile: TLSFixtures.path("self-signed.key"))
        }
        // A key is not a certificate, and a certificate is not a key.
        do {
            _ = try RPCServerTLS(certificateChainFile: TLSFixtures.path("server.key"), privateKeyFile: TLSFixtures.path("server.key"))
            Issue.record("a key file was accepted as a certificate")
        } catch {
            guard case .invalidFile(role: "certificate", path: TLSFixtures.path("server.key"), _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
        }
        do {
            _ = try RPCClientTLS(trustedCertificatesFile: TLSFixtures.path("ca.key"))
            Issue.record("a key file was accepted as a CA certificate")
        } catch {
            guard case .invalidFile(role: "CA certificate", _, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
        }
        #expect(throws: RPCTLSError.invalidServerName("10.0.0.1")) { _ = try RPCClientTLS(serverName: "10.0.0.1") }
    }
}
