/// Float buffers for one pass (activations, scratch), carved from large chunks that are kept between
/// passes: `reset` rewinds, and the next pass reuses the same memory instead of mapping and zeroing fresh
/// pages every step. Buffers taken before a `reset` must not be used after it.
final class Arena {
    private struct Chunk {
        let base: UnsafeMutablePointer<Float>
        let capacity: Int
    }

    /// 64 MB: far above any single activation buffer, small enough to waste little at a chunk's end.
    private static let chunkFloats = 16 << 20
    private var chunks: [Chunk] = []
    private var chunkIndex = 0
    private var used = 0

    deinit { for chunk in chunks { chunk.base.deallocate() } }

    /// Forgets every buffer handed out; the memory stays for the next pass.
    func reset() {
        chunkIndex = 0
        used = 0
    }

    /// The next `count` floats (uninitialised).
    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        while chunkIndex < chunks.count, used + count > chunks[chunkIndex].capacity {
            chunkIndex += 1
            used = 0
        }
        if chunkIndex == chunks.count {
            let capacity = max(count, Self.chunkFloats)
            chunks.append(Chunk(base: .allocate(capacity: capacity), capacity: capacity))
            used = 0
        }
        defer { used += count }
        return chunks[chunkIndex].base + used
    }
}
