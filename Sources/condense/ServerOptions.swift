import ArgumentParser
import CondenseClient
import Foundation

/// `--server HOST:PORT` and `--auth-token-file` of the commands that work on a server.
struct ServerOptions: ParsableArguments {
    @Option(help: "Server address, HOST:PORT.")
    var server: HostPort
    @Option(help: "File holding the server's shared secret.")
    var authTokenFile: String?

    func client() throws -> CondenseClient {
        try makeClient(server, authTokenFile: authTokenFile)
    }
}

/// A client of `server`; the token file, when given, must be readable.
func makeClient(_ server: HostPort, authTokenFile: String?) throws -> CondenseClient {
    let token = try authTokenFile.map { path in
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIFailure("cannot read the auth token file \(path)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return CondenseClient(host: server.host, port: server.port, authToken: token)
}

/// Runs `body` with the client and closes it whatever happened; call failures become a one-line CLI error.
func withServer<T: Sendable>(_ client: CondenseClient, _ body: (CondenseClient) async throws -> T) async throws -> T {
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch let error as CondenseClientError {
        await client.close()
        throw CLIFailure("\(client.host):\(client.port): \(error)")
    } catch {
        await client.close()
        throw error
    }
}

/// `1h05m`, `3m07s`, `42s`.
func formatDuration(seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let whole = Int(seconds.rounded())
    if whole >= 3600 { return "\(whole / 3600)h\(String(format: "%02d", whole / 60 % 60))m" }
    return whole >= 60 ? "\(whole / 60)m\(String(format: "%02d", whole % 60))s" : "\(whole)s"
}
