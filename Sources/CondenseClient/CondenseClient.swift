import CondenseRPC
import CondenseWire
import Logging

/// A client of a Condense server: `condense serve` (embeddings) or `condense coordinator`
/// (embeddings through workers, and fine-tuning jobs and adapters).
///
/// Calls share one connection, opened on first use and re-opened when it was lost. Failures throw
/// `CondenseClientError` with the RPC status code; per-text problems (an empty text, a text over
/// the token limit) fail only that text, as an `EmbeddingItemError`. Requests and results are the
/// CondenseWire messages (`EmbedOptions`, `FineTuneJobSpec`, `JobEvent`, ...), which the
/// CondenseClient product includes.
///
/// ```swift
/// import CondenseClient
/// import CondenseWire
///
/// let client = CondenseClient(host: "127.0.0.1", port: 7070)
/// let vectors = try await client.embed(["first text", "second text"]).vectors()
///
/// for try await item in client.embedStream(lines, options: EmbedOptions(normalize: true)) {
///     store(item.index, try item.vector.get())
/// }
///
/// let job = try await client.createFineTuneJob(
///     spec: FineTuneJobSpec(name: "support tickets", hyperparameters: Hyperparameters(duration: .epochs(1))),
///     pairs: pairs)
/// for try await event in client.watchJob(job.jobID) { print(event.sequence, event.kind as Any) }
/// let adapter = try await client.getJob(job.jobID).adapterID
/// try await client.downloadAdapter(adapter, to: "adapters/\(adapter)")
/// await client.close()
/// ```
public final class CondenseClient: Sendable {
    public let host: String
    public let port: Int
    /// Deadline of each unary call (`nil`: none). Streams run as long as they have work.
    public let timeout: Duration?
    /// How `watchJob` reconnects after losing its stream.
    public let watchRetry: RetryPolicy
    let connection: Connection

    /// Bounded reconnection: up to `maxAttempts` tries in a row (the count restarts whenever the
    /// stream delivers again), waiting `initialBackoff`, doubled per try up to `maxBackoff`, or the
    /// server's retry hint when it gave one.
    public struct RetryPolicy: Sendable, Hashable {
        public var maxAttempts: Int
        public var initialBackoff: Duration
        public var maxBackoff: Duration

        public init(maxAttempts: Int = 5, initialBackoff: Duration = .milliseconds(250), maxBackoff: Duration = .seconds(5)) {
            self.maxAttempts = max(0, maxAttempts)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }

        /// Wait before reconnect try `attempt` (1-based).
        func backoff(attempt: Int, hint: Duration?) -> Duration {
            if let hint { return hint }
            var wait = initialBackoff
            for _ in 1..<max(1, attempt) where wait < maxBackoff { wait *= 2 }
            return min(wait, maxBackoff)
        }
    }

    /// TLS to a server started with a certificate (`--tls-cert`/`--tls-key`).
    public struct TLS: Sendable {
        let settings: RPCClientTLS

        /// `caFile`: PEM certificates to trust instead of the system's trust roots (a private CA, or the
        /// server's self-signed certificate). `serverName`: the DNS name on the server's certificate, when it
        /// is not the host dialled. Throws INVALID_ARGUMENT for an unreadable or invalid file or name.
        public init(caFile: String? = nil, serverName: String? = nil) throws(CondenseClientError) {
            do { settings = try RPCClientTLS(trustedCertificatesFile: caFile, serverName: serverName) } catch {
                throw CondenseClientError(code: .invalidArgument, message: error.description)
            }
        }
    }

    /// A client of the server at `host`:`port`; nothing is sent before the first call.
    /// `authToken` is the server's shared secret (sent as `authorization: Bearer <token>`).
    /// `tls`: how to reach a TLS server; `nil` speaks plaintext.
    public init(
        host: String, port: Int, authToken: String? = nil, tls: TLS? = nil, timeout: Duration? = nil,
        watchRetry: RetryPolicy = RetryPolicy(), logger: Logger = Logger(label: "condense.client")
    ) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.watchRetry = watchRetry
        connection = Connection(host: host, port: port, authToken: authToken, tls: tls?.settings, logger: logger)
    }

    /// A client of `address`, written `HOST:PORT` (`[v6 address]:PORT` for IPv6).
    /// Throws INVALID_ARGUMENT for anything else.
    public convenience init(
        address: String, authToken: String? = nil, tls: TLS? = nil, timeout: Duration? = nil,
        watchRetry: RetryPolicy = RetryPolicy(), logger: Logger = Logger(label: "condense.client")
    ) throws(CondenseClientError) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw CondenseClientError(code: .invalidArgument, message: "'\(address)' is not HOST:PORT")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw CondenseClientError(code: .invalidArgument, message: "'\(address)' has no host") }
        self.init(
            host: host, port: port, authToken: authToken, tls: tls, timeout: timeout, watchRetry: watchRetry, logger: logger)
    }

    /// Closes the connection; calls still running fail with UNAVAILABLE. A later call reconnects.
    public func close() async {
        await connection.close()
    }

    // MARK: Embeddings

    /// Whether the server takes work (`SERVING`), with the reason in `detail` when it does not.
    /// `service` empty = the server as a whole.
    public func health(service: String = "") async throws(CondenseClientError) -> HealthResponse {
        try await unary(Methods.EmbeddingService.health, HealthRequest(service: service))
    }

    /// Embeds `texts` in one request (at most the server's per-request limit, 2048 by default; use
    /// `embedStream` for bulk work). A text the server cannot embed fails alone, as its
    /// `EmbeddingItemError`; `options` left at their defaults take the server's (and the adapter's) defaults.
    public func embed(_ texts: [String], options: EmbedOptions = EmbedOptions()) async throws(CondenseClientError) -> Embeddings {
        let response: EmbedResponse = try await unary(Methods.EmbeddingService.embed, EmbedRequest(texts: texts, options: options))
        guard response.results.count == texts.count else {
            throw CondenseClientError(
                code: .internal, message: "the server sent \(response.results.count) results for \(texts.count) texts")
        }
        return Embeddings(
            results: response.results.enumerated().map { position, result in result.floatVector(position: position) },
            model: response.model, usage: response.usage ?? Usage())
    }

    /// Embeds a sequence of any length through `EmbedStream`: texts go up in messages of `chunkSize`,
    /// and each result comes out as soon as the server finishes its batch, tagged with the text's
    /// position in `texts` (in no particular order; every position exactly once). The stream ends
    /// after the last result, or throws `CondenseClientError`. Flow control keeps the upload from
    /// running far ahead of the server; results wait in the stream until read.
    /// Ending the iteration early cancels the call.
    public func embedStream(
        _ texts: some Sequence<String> & Sendable, options: EmbedOptions = EmbedOptions(), chunkSize: Int = 256
    ) -> AsyncThrowingStream<StreamedEmbedding, any Error> {
        let chunkSize = max(1, chunkSize)
        let (stream, continuation) = AsyncThrowingStream<StreamedEmbedding, any Error>.makeStream()
        let call = Task {
            do {
                try await withConnection { client in
                    try await client.bidirectional(
                        Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self,
                        responseType: EmbedStreamResponse.self,
                        sendRequests: { writer in try await Self.upload(texts, options: options, chunkSize: chunkSize, to: writer) },
                        handleResponses: { responses in
                            for try await response in responses {
                                guard case .batch(let batch) = response.kind else { continue }
                                for result in batch.results {
                                    let index = Int(clamping: result.index)
                                    continuation.yield(StreamedEmbedding(
                                        index: index, vector: result.floatVector(position: index), tokenCount: Int(result.tokenCount)))
                                }
                            }
                        })
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in call.cancel() }
        return stream
    }

    /// Writes `texts` as EmbedStream messages: options in the first, stream index = position.
    private static func upload(
        _ texts: some Sequence<String>, options: EmbedOptions, chunkSize: Int, to writer: RPCMessageWriter<EmbedStreamRequest>
    ) async throws {
        var chunk: [String] = []
        chunk.reserveCapacity(chunkSize)
        var firstIndex: UInt64 = 0
        var sentOptions = false
        for text in texts {
            chunk.append(text)
            guard chunk.count == chunkSize else { continue }
            try await writer.write(EmbedStreamRequest(options: sentOptions ? nil : options, firstIndex: firstIndex, texts: chunk))
            sentOptions = true
            firstIndex += UInt64(chunk.count)
            chunk.removeAll(keepingCapacity: true)
        }
        if !chunk.isEmpty || !sentOptions {
            try await writer.write(EmbedStreamRequest(options: sentOptions ? nil : options, firstIndex: firstIndex, texts: chunk))
        }
    }

    // MARK: Calls

    func unary<Request: WireMessage, Response: WireMessage>(
        _ method: MethodDescriptor, _ request: Request
    ) async throws(CondenseClientError) -> Response {
        let options = CallOptions(timeout: timeout)
        return try await withConnection { client in
            try await client.unary(method.path, request: request, responseType: Response.self, options: options)
        }
    }

    /// Runs `body` on the shared connection; a connection found broken by an UNAVAILABLE failure
    /// is dropped so that the next call reconnects.
    func withConnection<Result: Sendable>(
        _ body: (RPCClient) async throws -> Result
    ) async throws(CondenseClientError) -> Result {
        let client: RPCClient
        do { client = try await connection.client() } catch { throw CondenseClientError(error) }
        do {
            return try await body(client)
        } catch {
            let failure = CondenseClientError(error)
            if failure.code == .unavailable { await connection.dropIfBroken(client) }
            throw failure
        }
    }
}
