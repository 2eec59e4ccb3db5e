import ArgumentParser
import CondenseRPC
import CondenseWire
import Foundation

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Print a server's serving status; exit 0 only when it is serving.")

    @Option(help: "Server address, HOST:PORT.")
    var server: HostPort
    @Option(help: "File holding the server's shared secret.")
    var authTokenFile: String?
    @OptionGroup var tls: ClientTLSOptions
    @Option(help: "Seconds to wait for the answer.")
    var timeout: Double = 5

    func run() async throws {
        let token = authTokenFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let clientTLS = try tls.rpcSettings()
        let response: HealthResponse
        do {
            response = try await withClient(server, authToken: token, tls: clientTLS) { client in
                try await client.unary(
                    Methods.EmbeddingService.health.path, request: HealthRequest(), responseType: HealthResponse.self,
                    options: CallOptions(timeout: .milliseconds(Int(timeout * 1000))))
            }
        } catch {
            print("unreachable: \(error)")
            throw ExitCode(2)
        }
        let status = switch response.status {
        case .serving: "serving"
        case .notServing: "not serving"
        case .unknown: "unknown"
        }
        print(response.detail.isEmpty ? status : "\(status): \(response.detail)")
        if response.status != .serving { throw ExitCode(1) }
    }
}

/// Connects, runs `body`, and closes the connection whatever `body` did.
func withClient<T: Sendable>(
    _ server: HostPort, authToken: String?, tls: RPCClientTLS?, _ body: (RPCClient) async throws -> T
) async throws -> T {
    let client = try await RPCClient.connect(host: server.host, port: server.port, authToken: authToken, tls: tls)
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}
