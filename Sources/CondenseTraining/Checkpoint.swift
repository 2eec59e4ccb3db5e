import CondenseEmbedding
import CondenseModel
import Foundation

/// What a checkpoint holds besides the adapter: where training stands and the settings it ran with.
struct TrainerState: Codable, Equatable {
    static let format = 1
    var format = TrainerState.format
    var completedSteps: Int
    /// Where the next batch comes from.
    var position: DataPosition
    var hyperparameters: FineTuneHyperparameters
}

/// Checkpoint directories `OUT/checkpoint-STEP/`: the PEFT adapter (adapter_config.json,
/// adapter_model.safetensors), the embedding recipe (condense_recipe.json), the optimizer's moments
/// (optimizer.safetensors) and `trainer_state.json`. Each is assembled in a hidden `.partial` directory
/// and renamed into place, so a crash leaves either a complete checkpoint or none.
enum Checkpoint {
    static let stateFile = "trainer_state.json"
    static let optimizerFile = "optimizer.safetensors"
    static let directoryPrefix = "checkpoint-"
    private static let partialSuffix = ".partial"

    /// The saved state a run resumes from.
    struct Saved {
        var state: TrainerState
        var adapter: LoRAAdapter
        var firstMoment: [Float]
        var secondMoment: [Float]
        var optimizerSteps: Int
    }

    /// STEP of a path ending in `checkpoint-STEP`.
    static func step(of path: String) -> Int? {
        let name = (path as NSString).lastPathComponent
        guard name.hasPrefix(directoryPrefix) else { return nil }
        return Int(name.dropFirst(directoryPrefix.count))
    }

    /// The complete checkpoint of the highest step in `directory`, if any.
    static func newest(in directory: String) -> String? {
        complete(in: directory).last?.path
    }

    /// The complete checkpoints in `directory`, oldest step first.
    static func complete(in directory: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> (step: Int, path: String)? in
            let path = (directory as NSString).appendingPathComponent(name)
            guard let step = step(of: path), FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(stateFile))
            else { return nil }
            return (step, path)
        }.sorted { $0.step < $1.step }
    }

    /// Deletes all but the newest `count` complete checkpoints in `directory` (each is hundreds of MB
    /// at rank 64 on the default model). Call only after the newest one is complete.
    static func prune(_ directory: String, keeping count: Int) throws(FineTuneError) {
        for old in complete(in: directory).dropLast(count) {
            // Renamed aside first, so a crash mid-delete leaves a leftover `prepare` removes, not a torn checkpoint.
            let doomed = (directory as NSString).appendingPathComponent("." + (old.path as NSString).lastPathComponent + partialSuffix)
            do {
                try rename(old.path, to: doomed)
                try FileManager.default.removeItem(atPath: doomed)
            } catch {
                throw .checkpoint(path: old.path, reason: "cannot delete an old checkpoint: \(error)")
            }
        }
    }

    /// Creates `directory` and removes directories a crashed run left half-written.
    static func prepare(_ directory: String) throws(FineTuneError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory)
            where name.hasPrefix(".") && name.hasSuffix(partialSuffix) {
                try FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
            }
        } catch { throw .checkpoint(path: directory, reason: error.localizedDescription) }
    }

    /// Writes `checkpoint-STEP` under `directory` and returns its path.
    static func write(
        state: TrainerState, adapter: LoRAAdapter, optimizer: AdamW, recipe: EmbeddingRecipe, baseModel: String,
        into directory: String
    ) throws(FineTuneError) -> String {
        let name = directoryPrefix + String(state.completedSteps)
        let final = (directory as NSString).appendingPathComponent(name)
        let partial = try makePartial(name, in: directory)
        do {
            try adapter.writePEFT(to: partial, baseModel: baseModel)
            try recipe.write(toDirectory: partial)
            let count = optimizer.firstMoment.count
            try SafeTensorsWriter.write(
                [.init(name: "first_moment", shape: [count], values: optimizer.firstMoment),
                 .init(name: "second_moment", shape: [count], values: optimizer.secondMoment)],
                metadata: ["steps": String(optimizer.steps)],
                to: (partial as NSString).appendingPathComponent(optimizerFile))
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: URL(fileURLWithPath: (partial as NSString).appendingPathComponent(stateFile)))
            if FileManager.default.fileExists(atPath: final) { try FileManager.default.removeItem(atPath: final) }
            try rename(partial, to: final)
        } catch { throw .checkpoint(path: final, reason: "\(error)") }
        return final
    }

    /// The final adapter and recipe in `directory` itself (a PEFT directory for `--adapter`): written
    /// aside, then each file renamed over its predecessor.
    static func writeFinalAdapter(
        _ adapter: LoRAAdapter, recipe: EmbeddingRecipe, baseModel: String, into directory: String
    ) throws(FineTuneError) {
        let partial = try makePartial("final", in: directory)
        do {
            try adapter.writePEFT(to: partial, baseModel: baseModel)
            try recipe.write(toDirectory: partial)
            for name in try FileManager.default.contentsOfDirectory(atPath: partial) {
                try rename((partial as NSString).appendingPathComponent(name), to: (directory as NSString).appendingPathComponent(name))
            }
            try FileManager.default.removeItem(atPath: partial)
        } catch { throw .checkpoint(path: directory, reason: "\(error)") }
    }

    static func read(_ path: String, model: ModelConfig) throws(FineTuneError) -> Saved {
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let stateData = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).appendingPathComponent(stateFile)))
            let state = try decoder.decode(TrainerState.self, from: stateData)
            guard state.format == TrainerState.format else {
                throw FineTuneError.checkpoint(path: path, reason: "trainer state format \(state.format), expected \(TrainerState.format)")
            }
            let adapter = try LoRAAdapter.readPEFT(from: path, model: model)
            let optimizer = try SafeTensorsFile(path: (path as NSString).appendingPathComponent(optimizerFile))
            return Saved(state: state, adapter: adapter,
                         firstMoment: try optimizer.tensorF32(named: "first_moment"),
                         secondMoment: try optimizer.tensorF32(named: "second_moment"),
                         optimizerSteps: state.completedSteps)
        } catch let error as FineTuneError {
            throw error
        } catch {
            throw .checkpoint(path: path, reason: "\(error)")
        }
    }

    private static func makePartial(_ name: String, in directory: String) throws(FineTuneError) -> String {
        let partial = (directory as NSString).appendingPathComponent("." + name + partialSuffix)
        do {
            if FileManager.default.fileExists(atPath: partial) { try FileManager.default.removeItem(atPath: partial) }
            try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        } catch { throw .checkpoint(path: partial, reason: error.localizedDescription) }
        return partial
    }

    /// POSIX rename: atomic, replaces a file (or an empty directory) at `destination`.
    private static func rename(_ source: String, to destination: String) throws {
        guard Foundation.rename(source, destination) == 0 else {
            throw FineTuneError.checkpoint(path: destination, reason: "rename failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// `OUT/training_log.jsonl`: one JSON object per optimizer step.
final class TrainingLog {
    static let fileName = "training_log.jsonl"

    struct Entry: Codable, Equatable {
        var step: Int
        var epoch: Int
        var loss: Double
        var learningRate: Float
        var gradientNorm: Float
        var pairs: Int
        /// Seconds since this process started training.
        var seconds: Double
    }

    private let handle: FileHandle
    private let path: String
    private let encoder: JSONEncoder

    init(directory: String) throws(FineTuneError) {
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        do {
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seekToEnd()
        } catch { throw .checkpoint(path: path, reason: error.localizedDescription) }
        encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    }

    deinit { try? handle.close() }

    func append(_ entry: Entry) throws(FineTuneError) {
        do { try handle.write(contentsOf: encoder.encode(entry) + Data("\n".utf8)) } catch {
            throw .checkpoint(path: path, reason: error.localizedDescription)
        }
    }

    /// Keeps the lines of steps up to `step` (a resumed run redoes the later ones).
    static func truncate(in directory: String, after step: Int) throws(FineTuneError) {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard let content = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let kept = content.split(separator: "\n").filter { line in
            ((try? decoder.decode(Entry.self, from: Data(line.utf8)))?.step ?? Int.max) <= step
        }
        do {
            try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch { throw .checkpoint(path: path, reason: error.localizedDescription) }
    }
}
