import CondenseClient
import CondenseEmbedding
import CondenseWire
import Foundation

/// `condense embed --server`: the same input and output files as local mode, embedded through the
/// server's EmbedStream with progress as batches come back.
extension EmbedCommand {
    func embedOnServer(_ server: HostPort) async throws {
        let format = try outputFormat()
        let options = try wireOptions()
        let texts: [String]
        do { texts = try TextInput.readTexts(path: input) } catch { throw CLIFailure("\(error)") }
        let client = try makeClient(server, authTokenFile: authTokenFile, tls: tls)

        let progress = ProgressReporter(total: texts.count, unit: "texts")
        var results = [Result<[Float], EmbeddingItemError>?](repeating: nil, count: texts.count)
        var finished = 0
        var tokens = 0
        try await withServer(client) { client in
            for try await item in client.embedStream(texts, options: options) {
                guard results.indices.contains(item.index), results[item.index] == nil else {
                    throw CLIFailure("\(server): the server sent a second result for text \(item.index)")
                }
                results[item.index] = item.vector
                finished += 1
                tokens += item.tokenCount
                progress.update(finished: finished)
            }
        }
        let delivered = results.compactMap { $0 }
        guard delivered.count == texts.count else {
            throw CLIFailure("\(server): the stream ended with \(texts.count - delivered.count) texts unanswered")
        }
        let failed = delivered.filter { if case .failure = $0 { true } else { false } }.count
        progress.finish(alsoCounted: [(tokens, "tokens")], note: failed > 0 ? "\(failed) failed" : nil)

        let width = dimensions ?? delivered.lazy.compactMap { try? $0.get().count }.first ?? 0
        try write(delivered, format: format, dimensions: width)
    }

    /// The embedding flags as `EmbedOptions`; flags left out stay unset so the server's defaults apply.
    func wireOptions() throws -> EmbedOptions {
        var options = EmbedOptions(adapterID: adapterOptions.adapter ?? "")
        if let prompt {
            let template: PromptTemplate
            do { template = try PromptTemplate(nameOrTemplate: prompt) } catch { throw CLIFailure("\(error)") }
            options.prompt = template.name.map { .promptName($0) } ?? .promptTemplate(prompt)
        }
        if let pooling {
            options.pooling = switch CondenseEmbedding.Pooling(rawValue: pooling) {
            case .mean: .mean
            case .last: .last
            case .eos: .eos
            case .weightedMean: .weightedMean
            case nil:
                throw CLIFailure(
                    "unknown pooling '\(pooling)' (use \(CondenseEmbedding.Pooling.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        // The CLI's default is local mode's (unnormalized), not the protocol's (normalized), so the same
        // command gives the same vectors with and without --server; an adapter's recipe decides when set.
        options.normalize = normalize ?? (adapterOptions.adapter == nil ? false : nil)
        options.excludePrompt = excludePrompt ?? false
        if let dimensions {
            guard let value = UInt32(exactly: dimensions), value > 0 else { throw CLIFailure("--dimensions must be at least 1") }
            options.dimensions = value
        }
        if let maxTokens {
            guard let value = UInt32(exactly: maxTokens), value > 0 else { throw CLIFailure("--max-tokens must be at least 1") }
            options.maxTokens = value
        }
        options.truncation = switch CondenseEmbedding.TruncationPolicy(rawValue: truncation) {
        case .truncate: .truncate
        case .reject: .reject
        case nil: throw CLIFailure("unknown truncation '\(truncation)' (use truncate or reject)")
        }
        return options
    }
}
