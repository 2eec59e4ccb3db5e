import ArgumentParser
import CondenseClient
import CondenseRPC
import Foundation

/// `--server HOST:PORT`, `--auth-token-file` and the TLS flags of the commands that work on a server.
struct ServerOptions: ParsableArguments {
    @Option(help: "Server address, HOST:PORT.")
    var server: HostPort
    @Option(help: "File holding the server's shared secret.")
    var authTokenFile: String?
    @OptionGroup var tls: ClientTLSOptions

    func client() throws -> CondenseClient {
        try makeClient(server, authTokenFile: authTokenFile, tls: tls)
    }
}

/// A client of `server`; the token file, when given, must be readable.
func makeClient(_ server: HostPort, authTokenFile: String?, tls: ClientTLSOptions) throws -> CondenseClient {
    let token = try authTokenFile.map { path in
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIFailure("cannot read the auth token file \(path)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    let clientTLS: CondenseClient.TLS?
    do { clientTLS = try tls.enabled ? CondenseClient.TLS(caFile: tls.caFile, serverName: tls.serverName) : nil } catch {
        throw CLIFailure(error.message)
    }
    return CondenseClient(host: server.host, port: server.port, authToken: token, tls: clientTLS)
}

/// `--tls`, `--tls-ca`, `--tls-server-name` of every command that dials a server.
struct ClientTLSOptions: ParsableArguments {
    @Flag(name: .customLong("tls"), help: "Connect with TLS, trusting the system's certificate authorities.")
    var tlsFlag = false
    @Option(name: .customLong("tls-ca"), help: "PEM file of the CA (or self-signed certificate) to trust for the server's certificate; implies --tls.")
    var caFile: String?
    @Option(name: .customLong("tls-server-name"), help: "Name the server's certificate must carry when it is not the host dialled; implies --tls.")
    var serverName: String?

    var enabled: Bool { tlsFlag || caFile != nil || serverName != nil }

    /// The RPC-level settings; nil for plaintext.
    func rpcSettings() throws -> RPCClientTLS? {
        guard enabled else { return nil }
        do { return try RPCClientTLS(trustedCertificatesFile: caFile, serverName: serverName) } catch {
            throw CLIFailure(error.description)
        }
    }
}

/// `--tls-cert`, `--tls-key` of the commands that serve the RPC port (the operations port stays plain HTTP).
struct ServerTLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve the RPC port over TLS only (with --tls-key).")
    var certificateFile: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var keyFile: String?

    /// The server's TLS settings, nil without the flags; the files are loaded and checked now.
    func settings() throws -> RPCServerTLS? {
        switch (certificateFile, keyFile) {
        case (nil, nil): return nil
        case (let certificate?, let key?):
            do { return try RPCServerTLS(certificateChainFile: certificate, privateKeyFile: key) } catch {
                throw CLIFailure(error.description)
            }
        default: throw CLIFailure("--tls-cert and --tls-key go together")
        }
    }
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
