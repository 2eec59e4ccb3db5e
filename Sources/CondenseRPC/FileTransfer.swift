import CondenseWire
import Foundation

/// The `FileChunk` transfer of Protos/services.md: a directory's files one after another, each in
/// order with `offset` = bytes of that file sent before, `file_size` in every chunk and `last` on the
/// final chunk. Used for adapter downloads, checkpoint uploads and fetches.
public enum FileTransfer {
    /// Largest chunk a sender uses, far below the 16 MiB frame limit.
    public static let maxChunkSize = 4 << 20
    public static let defaultChunkSize = 1 << 20

    /// Sends the regular files directly in `directory`, sorted by name, as chunks of at most
    /// `chunkSize` bytes (0 = 1 MiB, capped at 4 MiB), reading one chunk at a time.
    public static func send(
        _ directory: String, chunkSize: Int, to write: (FileChunk) async throws -> Void
    ) async throws {
        let size = chunkSize <= 0 ? defaultChunkSize : min(chunkSize, maxChunkSize)
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted() } catch {
            throw RPCError(code: .notFound, message: "cannot list \(directory): \(error.localizedDescription)")
        }
        for name in names where !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            guard let handle = FileHandle(forReadingAtPath: path) else { throw RPCError(code: .internal, message: "cannot read \(path)") }
            defer { try? handle.close() }
            let fileSize: UInt64
            do { fileSize = try handle.seekToEnd(); try handle.seek(toOffset: 0) } catch {
                throw RPCError(code: .internal, message: "cannot read \(path): \(error.localizedDescription)")
            }
            var offset: UInt64 = 0
            repeat {
                let data: Data
                do { data = try handle.read(upToCount: size) ?? Data() } catch {
                    throw RPCError(code: .internal, message: "cannot read \(path): \(error.localizedDescription)")
                }
                guard !data.isEmpty || fileSize == 0 else {
                    throw RPCError(code: .dataLoss, message: "\(path) shrank while being sent")
                }
                let end = offset + UInt64(data.count)
                try await write(FileChunk(path: name, offset: offset, data: [UInt8](data), last: end >= fileSize, fileSize: fileSize))
                offset = end
            } while offset < fileSize
        }
    }

    /// Writes received chunks into a directory, checking order and sizes. A gap, an overlap, a size
    /// mismatch, an unfinished file or an unsafe path fails with DATA_LOSS / INVALID_ARGUMENT.
    public struct Receiver {
        public let directory: String
        private var currentPath: String?
        private var currentSize: UInt64 = 0
        private var received: UInt64 = 0
        private var handle: FileHandle?
        public private(set) var files: [String] = []
        public private(set) var totalBytes: UInt64 = 0

        /// Files go into `directory`, which is created (it should be a fresh temporary one: the
        /// caller renames it into place once `finish()` succeeds).
        public init(directory: String) throws(RPCError) {
            self.directory = directory
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw RPCError(code: .internal, message: "cannot create \(directory): \(error.localizedDescription)")
            }
        }

        public mutating func receive(_ chunk: FileChunk) throws(RPCError) {
            if chunk.path != currentPath {
                guard currentPath == nil else {
                    throw RPCError(code: .dataLoss, message: "file \(currentPath ?? "") ended after \(received) of \(currentSize) bytes")
                }
                try Self.checkSafe(chunk.path)
                guard !files.contains(chunk.path) else { throw RPCError(code: .dataLoss, message: "file \(chunk.path) sent twice") }
                let path = (directory as NSString).appendingPathComponent(chunk.path)
                guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
                    throw RPCError(code: .internal, message: "cannot create \(path)")
                }
                self.handle = handle
                currentPath = chunk.path
                currentSize = chunk.fileSize
                received = 0
                files.append(chunk.path)
            }
            guard chunk.offset == received else {
                throw RPCError(code: .dataLoss, message: "\(chunk.path): chunk at offset \(chunk.offset), expected \(received)")
            }
            guard chunk.fileSize == currentSize, received + UInt64(chunk.data.count) <= currentSize else {
                throw RPCError(code: .dataLoss, message: "\(chunk.path): chunk goes past the file size \(currentSize)")
            }
            do { try handle?.write(contentsOf: chunk.data) } catch {
                throw RPCError(code: .internal, message: "cannot write \(chunk.path): \(error.localizedDescription)")
            }
            received += UInt64(chunk.data.count)
            totalBytes += UInt64(chunk.data.count)
            if chunk.last {
                guard received == currentSize else {
                    throw RPCError(code: .dataLoss, message: "\(chunk.path): last chunk after \(received) of \(currentSize) bytes")
                }
                try? handle?.close()
                handle = nil
                currentPath = nil
            }
        }

        /// Checks that the last file was complete; the directory then holds exactly what was sent.
        public mutating func finish() throws(RPCError) {
            if let currentPath {
                try? handle?.close()
                handle = nil
                throw RPCError(code: .dataLoss, message: "file \(currentPath) ended after \(received) of \(currentSize) bytes")
            }
        }

        /// Plain file names only: artifacts are flat directories.
        static func checkSafe(_ path: String) throws(RPCError) {
            guard !path.isEmpty, !path.contains("/"), !path.contains("\\"), path != ".", path != "..", !path.hasPrefix(".") else {
                throw RPCError(code: .invalidArgument, message: "unsafe file name '\(path)' in a transfer")
            }
        }
    }
}
