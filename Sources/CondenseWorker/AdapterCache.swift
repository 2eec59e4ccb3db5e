import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import Foundation
import Logging

/// How an embedding worker serves fine-tuned adapters (`EmbedOptions.adapter_id`): fetched from the
/// coordinator on first use, merged into a copy of the base model, and kept.
public struct AdapterServing: Sendable {
    /// Fetched adapters live in `<cacheDirectory>/<adapter id>/`. The worker empties the directory when
    /// it starts: an adapter id names one artifact of one coordinator, not of whichever one used the folder before.
    public var cacheDirectory: String
    /// Most adapters kept merged in memory (least recently used ones are dropped); each is a full
    /// copy of the model's weights (about 550 MB for SmolLM2-135M).
    public var capacity: Int
    /// Builds an embedder with the PEFT adapter in the given directory merged into the base model.
    public var load: @Sendable (_ adapterDirectory: String) throws -> Embedder

    public init(cacheDirectory: String, capacity: Int = 2, load: @escaping @Sendable (_ adapterDirectory: String) throws -> Embedder) {
        self.cacheDirectory = cacheDirectory
        self.capacity = max(1, capacity)
        self.load = load
    }

    /// Reloads the base model from `modelPath` for each adapter (`Embedder.load(modelPath:adapterDirectory:)`).
    public static func merging(into modelPath: String, cacheDirectory: String, capacity: Int = 2) -> AdapterServing {
        AdapterServing(cacheDirectory: cacheDirectory, capacity: capacity) { directory in
            try Embedder.load(modelPath: modelPath, adapterDirectory: directory)
        }
    }
}

/// An adapter ready to embed with: the merged model and the recipe it was trained with (nil for an
/// adapter stored without `condense_recipe.json`).
struct LoadedAdapter: Sendable {
    let embedder: Embedder
    let recipe: EmbeddingRecipe?
}

/// Why an adapter could not be used; the batch's items fail with this text.
struct AdapterUnavailable: Error, CustomStringConvertible {
    let description: String
}

/// The worker's adapters: on disk (fetched once per process) and merged in memory (LRU, at most
/// `capacity`). Concurrent requests for an adapter that is not loaded yet share one fetch and load.
actor AdapterCache {
    /// Downloads an adapter's files into a fresh directory (the worker's FetchAdapter call).
    typealias Fetch = @Sendable (_ adapterID: String, _ directory: String) async throws -> Void

    private let serving: AdapterServing
    private let logger: Logger
    /// Merged adapters; `recency` orders their ids least recently used first.
    private var loaded: [String: LoadedAdapter] = [:]
    private var recency: [String] = []
    private var inProgress: [String: Task<LoadedAdapter, any Error>] = [:]

    init(serving: AdapterServing, logger: Logger) {
        self.serving = serving
        self.logger = logger
        try? FileManager.default.removeItem(atPath: serving.cacheDirectory)
    }

    /// Ids of the adapters merged in memory, most recently used first (reported in `Register`).
    var loadedIDs: [String] { recency.reversed() }

    /// The adapter `id`, fetched with `fetch` if it is not on disk and loaded if it is not in memory.
    func adapter(_ id: String, fetch: @escaping Fetch) async throws -> LoadedAdapter {
        if let adapter = loaded[id] {
            recency.removeAll { $0 == id }
            recency.append(id)
            return adapter
        }
        if let task = inProgress[id] { return try await task.value }
        let task = Task { [serving, logger] in
            defer { inProgress[id] = nil }
            let adapter = try await Self.prepare(id, serving: serving, fetch: fetch, logger: logger)
            insert(id, adapter)
            return adapter
        }
        inProgress[id] = task
        return try await task.value
    }

    private func insert(_ id: String, _ adapter: LoadedAdapter) {
        loaded[id] = adapter
        recency.removeAll { $0 == id }
        recency.append(id)
        while recency.count > serving.capacity {
            let evicted = recency.removeFirst()
            loaded[evicted] = nil
            logger.info("adapter dropped from memory", metadata: ["adapter": "\(evicted)"])
        }
    }

    /// Fetches the adapter into the disk cache unless it is there, then merges it on the compute queue.
    private static func prepare(_ id: String, serving: AdapterServing, fetch: Fetch, logger: Logger) async throws -> LoadedAdapter {
        // The id becomes a directory name: a single path component, never hidden.
        guard !id.isEmpty, !id.hasPrefix("."), !id.contains("/") else {
            throw AdapterUnavailable(description: "invalid adapter id '\(id)'")
        }
        let directory = (serving.cacheDirectory as NSString).appendingPathComponent(id)
        let manager = FileManager.default
        if !manager.fileExists(atPath: directory) {
            // Received under a temporary name and renamed when complete: a directory under its id is always whole.
            let incoming = (serving.cacheDirectory as NSString).appendingPathComponent(".incoming-\(UUID().uuidString)")
            do {
                try manager.createDirectory(atPath: serving.cacheDirectory, withIntermediateDirectories: true)
                try await fetch(id, incoming)
                try manager.moveItem(atPath: incoming, toPath: directory)
            } catch {
                try? manager.removeItem(atPath: incoming)
                throw AdapterUnavailable(description: "cannot fetch adapter '\(id)': \(describe(error))")
            }
            logger.info("adapter fetched", metadata: ["adapter": "\(id)"])
        }
        let load = serving.load
        let result: Result<LoadedAdapter, AdapterUnavailable> = await ComputeQueue.shared.run {
            do {
                let recipe = try EmbeddingRecipe.read(fromDirectory: directory)
                return .success(LoadedAdapter(embedder: try load(directory), recipe: recipe))
            } catch {
                return .failure(AdapterUnavailable(description: "cannot load adapter '\(id)': \(describe(error))"))
            }
        }
        let adapter = try result.get()
        logger.info("adapter loaded", metadata: ["adapter": "\(id)"])
        return adapter
    }

    private static func describe(_ error: any Error) -> String {
        (error as? RPCError)?.message ?? "\(error)"
    }
}
