import CondenseEmbedding
import CondenseModel
import CondenseTensor
import CondenseTokenizer
import Dispatch
import Foundation
import Logging

/// A model ready to serve: the embedder and the facts `GetModelInfo` reports.
public struct ServedModel: Sendable {
    public let modelID: String
    public let summary: ModelSummary
    public let embedder: Embedder
    /// e.g. "byte-level BPE (smollm)".
    public let tokenizerDescription: String
}

/// Owns the served model's life cycle. The server starts answering (health NOT_SERVING) before
/// the model has loaded, so probes and clients see "loading" instead of a refused connection.
public actor ModelHost {
    public enum State: Sendable {
        case loading
        case ready(ServedModel)
        case failed(String)
    }

    public private(set) var state: State = .loading
    private let logger: Logger

    public init(logger: Logger = Logger(label: "condense.model")) {
        self.logger = logger
    }

    /// Loads the model off the cooperative thread pool (loading is seconds of blocking I/O and math).
    public func load(path: String) async {
        state = .loading
        let logger = self.logger
        logger.info("loading model", metadata: ["path": "\(path)"])
        let clock = ContinuousClock()
        let started = clock.now
        let result: Result<ServedModel, any Error> = await ComputeQueue.shared.run {
            Result {
                var loaded = try ModelLoader.load(path: path)
                let modelID = (path as NSString).lastPathComponent
                let embedder = Embedder(
                    model: try LlamaModel(packing: &loaded.weights), tokenizer: try Tokenizer(spec: loaded.tokenizer),
                    modelName: modelID)
                return ServedModel(
                    modelID: modelID, summary: loaded.summary, embedder: embedder,
                    tokenizerDescription: "byte-level BPE (\(loaded.tokenizer.preTokenizer))")
            }
        }
        switch result {
        case .success(let served):
            state = .ready(served)
            logger.info(
                "model ready",
                metadata: [
                    "model": "\(served.modelID)", "architecture": "\(served.summary.architecture.rawValue)",
                    "seconds": "\((clock.now - started).formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 2))))",
                    "blas_core": "\(BLASRuntime.coreName)", "linear_kernels": "\(PackedWeight.instructionSet)",
                ])
        case .failure(let error):
            state = .failed("\(error)")
            logger.error("model failed to load", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    public var servedModel: ServedModel? {
        if case .ready(let model) = state { return model }
        return nil
    }
}

/// Runs blocking compute (model loading, forward passes) on one dedicated serial queue: OpenBLAS
/// already uses every core per call, so running forward passes concurrently would only thrash.
/// Keeps that work off NIO event loops and off Swift's cooperative pool.
public final class ComputeQueue: Sendable {
    public static let shared = ComputeQueue(label: "condense.compute")
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label, qos: .userInitiated)
    }

    public func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: work()) }
        }
    }
}
