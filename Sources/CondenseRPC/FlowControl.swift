import CondenseWire
import NIOConcurrencyHelpers
import NIOCore

/// Message-counted flow control (see Protos/README.md, "Flow control").
public enum FlowControl {
    /// MESSAGE frames a sender may have outstanding per stream and direction before any grant.
    public static let initialWindow = 64
    /// A receiver grants credit back in batches of this many consumed messages.
    public static let grantBatch = 32
}

/// Credit for MESSAGE frames this side may still send on one stream. Shared between the writing
/// task and the event loop so that a write with credit needs no round trip to the loop.
final class SendCredit: Sendable {
    private let available = NIOLockedValueBox(FlowControl.initialWindow)

    /// Takes one unit of credit if there is any.
    func take() -> Bool {
        available.withLockedValue { credit in
            guard credit > 0 else { return false }
            credit -= 1
            return true
        }
    }

    func add(_ increment: UInt32) {
        available.withLockedValue { $0 += Int(increment) }
    }
}

/// Writes waiting for credit on one stream. Event-loop confined.
struct OutboundWindow {
    let credit = SendCredit()
    private var waiting: [(frame: [UInt8], promise: EventLoopPromise<Void>)] = []

    /// Writes `frame` now through `write` if credit remains, else parks it until `grant`.
    mutating func submit(frame: [UInt8], promise: EventLoopPromise<Void>, write: ([UInt8]) -> Void) {
        if waiting.isEmpty && credit.take() {
            write(frame)
            promise.succeed()
        } else {
            waiting.append((frame, promise))
        }
    }

    /// Adds credit and writes parked frames it now covers.
    mutating func grant(_ increment: UInt32, write: ([UInt8]) -> Void) {
        credit.add(increment)
        var released = 0
        while released < waiting.count && credit.take() {
            write(waiting[released].frame)
            waiting[released].promise.succeed()
            released += 1
        }
        waiting.removeFirst(released)
    }

    /// Fails every parked write (the stream ended).
    mutating func failWaiting(with error: any Error) {
        let parked = waiting
        waiting.removeAll()
        for entry in parked { entry.promise.fail(error) }
    }
}

/// Credit this side has granted the peer on one stream. Event-loop confined.
struct InboundWindow {
    private var allowance = FlowControl.initialWindow

    /// Accounts for a received MESSAGE; `false` when the peer exceeded its credit.
    mutating func receive() -> Bool {
        guard allowance > 0 else { return false }
        allowance -= 1
        return true
    }

    /// Accounts for `count` messages the application consumed; returns the credit to grant.
    mutating func consume(_ count: Int) -> UInt32 {
        allowance += count
        return UInt32(count)
    }
}
