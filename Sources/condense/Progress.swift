import Foundation

/// Progress of a long CLI job on stderr: a redrawn bar with rate and ETA on a terminal, a plain line
/// every few seconds otherwise (logs, CI). Updates may come from any thread.
final class ProgressReporter: @unchecked Sendable {
    private let total: Int
    private let unit: String
    private let interactive: Bool
    private let start = ContinuousClock.now
    private let lock = NSLock()
    /// Guarded by `lock`.
    private var lastReport: ContinuousClock.Instant
    private var finished = 0

    private static let redrawInterval = Duration.milliseconds(100)
    private static let lineInterval = Duration.seconds(5)
    private static let barWidth = 30

    init(total: Int, unit: String, interactive: Bool = isatty(STDERR_FILENO) != 0) {
        self.total = total
        self.unit = unit
        self.interactive = interactive
        lastReport = start
    }

    func update(finished: Int) {
        lock.lock()
        defer { lock.unlock() }
        self.finished = finished
        let now = ContinuousClock.now
        let interval = interactive ? Self.redrawInterval : Self.lineInterval
        guard now - lastReport >= interval || (interactive && finished == total) else { return }
        lastReport = now
        let elapsed = Self.seconds(now - start)
        write(interactive ? "\r" + bar(elapsed: elapsed) : status(elapsed: elapsed) + "\n")
    }

    /// Final summary line: finished count, time and rates, plus the rates of `alsoCounted` quantities
    /// (e.g. tokens) and a note.
    func finish(alsoCounted: [(count: Int, unit: String)] = [], note: String? = nil) {
        lock.lock()
        defer { lock.unlock() }
        let elapsed = Self.seconds(ContinuousClock.now - start)
        var line = "\(finished) \(unit) in \(String(format: "%.2f", elapsed)) s (\(rate(finished, elapsed)) \(unit)/s"
        for (count, unit) in alsoCounted { line += ", \(count) \(unit), \(rate(count, elapsed)) \(unit)/s" }
        line += ")"
        if let note { line += "; \(note)" }
        write((interactive ? "\r\u{1B}[2K" : "") + line + "\n")
    }

    private func bar(elapsed: Double) -> String {
        let fraction = total > 0 ? Double(finished) / Double(total) : 1
        let filled = min(Self.barWidth, Int(fraction * Double(Self.barWidth)))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: Self.barWidth - filled) + "] "
            + status(elapsed: elapsed) + "\u{1B}[K"
    }

    private func status(elapsed: Double) -> String {
        "\(finished)/\(total) \(unit), \(rate(finished, elapsed)) \(unit)/s, ETA \(eta(elapsed: elapsed))"
    }

    private func rate(_ count: Int, _ elapsed: Double) -> String {
        elapsed > 0 ? String(format: "%.1f", Double(count) / elapsed) : "-"
    }

    private func eta(elapsed: Double) -> String {
        guard finished > 0, elapsed > 0 else { return "?" }
        let remaining = Double(total - finished) * elapsed / Double(finished)
        let seconds = Int(remaining.rounded())
        return seconds >= 60 ? "\(seconds / 60)m\(String(format: "%02d", seconds % 60))s" : "\(seconds)s"
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
