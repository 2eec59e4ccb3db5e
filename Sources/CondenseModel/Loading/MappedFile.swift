#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory. Pages are read on first touch, so opening a large
/// model costs nothing until its tensors are used, and the mapping is shared with the page cache.
final class MappedFile: @unchecked Sendable {
    let path: String
    /// The file's bytes; valid until the object is released. Never written through.
    let bytes: UnsafeRawBufferPointer

    init(path: String) throws(ModelLoadError) {
        self.path = path
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .fileNotFound(path: path) }
            throw .ioError(path: path, detail: String(cString: strerror(code)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw .ioError(path: path, detail: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw .ioError(path: path, detail: "not a regular file")
        }
        let size = Int(status.st_size)
        guard size > 0 else {
            // mmap rejects empty mappings; an empty file is simply too short for any format.
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), mapped != MAP_FAILED else {
            throw .ioError(path: path, detail: "mmap failed: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
    }

    /// Drops the pages of `range` from this process's resident set once their bytes have been
    /// consumed (e.g. dequantized into F32 copies), so a model's file does not stay resident next to
    /// its weights. The mapping is private and read-only: later reads fault the same bytes back in
    /// from the page cache.
    func releaseResidentPages(_ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + pageSize - 1) / pageSize * pageSize
        let end = range.upperBound / pageSize * pageSize
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }
}
