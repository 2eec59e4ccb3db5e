import CondenseRPC
import CondenseWire
import Foundation

/// Checkpoint and adapter directories under the coordinator's state directory:
/// `checkpoints/<job>-step-<n>/` and `adapters/<adapter id>/`, each a flat PEFT directory (plus the
/// trainer's resume state for checkpoints). Uploads land in `incoming/` and are renamed into place
/// only when complete, so a crash never leaves a half-written artifact under its final name.
public struct ArtifactStore: Sendable {
    public let root: String

    public init(stateDirectory: String) throws(RPCError) {
        root = stateDirectory
        for folder in ["checkpoints", "adapters", "incoming"] {
            do {
                try FileManager.default.createDirectory(
                    atPath: (root as NSString).appendingPathComponent(folder), withIntermediateDirectories: true)
            } catch {
                throw RPCError(code: .internal, message: "cannot create \(folder) in \(root): \(error.localizedDescription)")
            }
        }
        // Leftovers of uploads interrupted by a crash.
        let incoming = (root as NSString).appendingPathComponent("incoming")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? [] {
            try? FileManager.default.removeItem(atPath: (incoming as NSString).appendingPathComponent(name))
        }
    }

    public static func checkpointID(job: String, step: UInt32) -> String { "\(job)-step-\(step)" }

    public func checkpointPath(_ id: String) throws(RPCError) -> String {
        try Self.checkID(id, kind: "checkpoint")
        return (root as NSString).appendingPathComponent("checkpoints/\(id)")
    }

    public func adapterPath(_ id: String) throws(RPCError) -> String {
        try Self.checkID(id, kind: "adapter")
        return (root as NSString).appendingPathComponent("adapters/\(id)")
    }

    /// A fresh directory for an upload in progress.
    public func incomingDirectory() -> String {
        (root as NSString).appendingPathComponent("incoming/\(UUID().uuidString)")
    }

    /// Moves a completed upload to `destination`, replacing what was there.
    public func commit(_ incoming: String, to destination: String) throws(RPCError) {
        let manager = FileManager.default
        do {
            if manager.fileExists(atPath: destination) { try manager.removeItem(atPath: destination) }
            try manager.moveItem(atPath: incoming, toPath: destination)
        } catch {
            throw RPCError(code: .internal, message: "cannot store \(destination): \(error.localizedDescription)")
        }
    }

    /// Deletes all but the newest `count` stored checkpoints of `job` (by step), never `protected`
    /// (the job's resume point). Each goes to `incoming/` first, so a crash mid-delete leaves
    /// nothing under a checkpoint's name that `FetchAdapter` could serve half-deleted.
    public func pruneCheckpoints(of job: String, keeping count: Int, protecting protected: String?) throws(RPCError) {
        let folder = (root as NSString).appendingPathComponent("checkpoints")
        let prefix = "\(job)-step-"
        let stored = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap { name -> (step: UInt32, id: String)? in
            guard name.hasPrefix(prefix), let step = UInt32(name.dropFirst(prefix.count)) else { return nil }
            return (step, name)
        }.sorted { $0.step < $1.step }
        for old in stored.dropLast(count) where old.id != protected {
            let doomed = incomingDirectory()
            do {
                try FileManager.default.moveItem(atPath: (folder as NSString).appendingPathComponent(old.id), toPath: doomed)
                try FileManager.default.removeItem(atPath: doomed)
            } catch {
                throw RPCError(code: .internal, message: "cannot delete checkpoint \(old.id): \(error.localizedDescription)")
            }
        }
    }

    /// File names and total size of an artifact directory.
    public func contents(of directory: String) -> (files: [String], bytes: UInt64) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        let bytes = names.reduce(UInt64(0)) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(name))
            return total + ((attributes?[.size] as? NSNumber)?.uint64Value ?? 0)
        }
        return (names, bytes)
    }

    /// Ids become directory names: letters, digits, `.`, `_`, `-`; 1 to 128 characters; no leading dot.
    public static func checkID(_ id: String, kind: String) throws(RPCError) {
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard !id.isEmpty, id.utf8.count <= 128, allowed, !id.hasPrefix(".") else {
            throw RPCError(code: .invalidArgument,
                           message: "invalid \(kind) id '\(id)': use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }
}
