import CondenseWire

/// The answer to `CondenseClient.embed`: one result per input text, in input order.
public struct Embeddings: Sendable, Hashable {
    /// The vector of each text, or why that text failed.
    public var results: [Result<[Float], EmbeddingItemError>]
    /// The model that embedded the texts, with `+<adapter id>` when an adapter was applied.
    public var model: String
    public var usage: Usage

    public init(results: [Result<[Float], EmbeddingItemError>], model: String, usage: Usage) {
        self.results = results
        self.model = model
        self.usage = usage
    }

    /// Every vector, in input order; throws the first item's error when any text failed.
    public func vectors() throws(EmbeddingItemError) -> [[Float]] {
        try results.map { result throws(EmbeddingItemError) in try result.get() }
    }
}

/// One result of `CondenseClient.embedStream`, delivered when the server finishes its batch.
public struct StreamedEmbedding: Sendable, Hashable {
    /// Position of the text in the input sequence.
    public var index: Int
    /// The vector, or why this text failed.
    public var vector: Result<[Float], EmbeddingItemError>
    /// Tokens embedded for this text, prompt included.
    public var tokenCount: Int

    public init(index: Int, vector: Result<[Float], EmbeddingItemError>, tokenCount: Int) {
        self.index = index
        self.vector = vector
        self.tokenCount = tokenCount
    }
}

extension EmbeddingResult {
    /// The float vector, or the item's error. `position` overrides `index` (Embed results are in
    /// request order; EmbedStream results carry the stream index).
    func floatVector(position: Int) -> Result<[Float], EmbeddingItemError> {
        if let error { return .failure(EmbeddingItemError(index: position, code: error.code, message: error.message)) }
        guard let vector else {
            return .failure(EmbeddingItemError(index: position, code: .internal, message: "the server sent neither a vector nor an error"))
        }
        return .success(vector.floatValues)
    }
}

extension Vector {
    /// The components as floats, whatever precision was requested (binary: +1 for a set bit, -1
    /// otherwise). Decoded here rather than with CondenseEmbedding so that clients do not link the model engine.
    var floatValues: [Float] {
        switch precision {
        case .unspecified, .float32:
            return values
        case .float16:
            return stride(from: 0, to: data.count - 1, by: 2).map { offset in
                Float(Float16(bitPattern: UInt16(data[offset]) | UInt16(data[offset + 1]) << 8))
            }
        case .int8:
            return data.map { Float(Int8(bitPattern: $0)) * scale }
        case .binary:
            return (0..<min(Int(dimensions), data.count * 8)).map { bit in
                data[bit / 8] & (0x80 >> UInt8(bit % 8)) != 0 ? 1 : -1
            }
        }
    }
}
