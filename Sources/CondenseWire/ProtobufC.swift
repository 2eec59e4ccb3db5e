import CCondenseProtos

// Bridging between the Swift wrappers and protobuf-c structs. Decoding unpacks in C, copies every
// field out into Swift values (validating strings and enums) and frees the C tree before
// returning. Encoding builds a C tree whose strings, arrays and sub-messages live in a `CArena`,
// packs it, and frees the arena; no C pointer outlives the call.

/// The C entry points protoc-c generates for one message type. The per-message functions are
/// used (rather than the generic `protobuf_c_message_*` with a descriptor address taken in
/// Swift) because protobuf-c compares descriptors by address: see shared/docs/platform-notes.md.
struct CMessageFunctions<CMessage> {
    let initialize: (UnsafeMutablePointer<CMessage>?) -> Void
    let packedSize: (UnsafePointer<CMessage>?) -> Int
    let pack: (UnsafePointer<CMessage>?, UnsafeMutablePointer<UInt8>?) -> Int
    let unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<CMessage>?
    let freeUnpacked: (UnsafeMutablePointer<CMessage>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void
}

/// A wrapper whose wire format is produced by a protobuf-c message struct.
protocol CBackedMessage: WireMessage {
    associatedtype CMessage
    /// Full proto name, used in error messages.
    static var protoName: String { get }
    static var cFunctions: CMessageFunctions<CMessage> { get }
    /// Copies a decoded C message into Swift values.
    init(c: CMessage) throws(WireError)
    /// Points the fields of an initialised C message at copies owned by `arena`.
    func fill(_ c: inout CMessage, arena: CArena)
}

func decodeMessage<Message: CBackedMessage>(_ bytes: some Collection<UInt8>) throws(WireError) -> Message {
    let functions = Message.cFunctions
    let unpack = { (buffer: UnsafeBufferPointer<UInt8>) in functions.unpack(nil, buffer.count, buffer.baseAddress) }
    // Arrays and slices are read in place; other collections are copied once.
    let unpacked = bytes.withContiguousStorageIfAvailable(unpack) ?? Array(bytes).withUnsafeBufferPointer(unpack)
    guard let unpacked else { throw WireError.undecodable(message: Message.protoName) }
    defer { functions.freeUnpacked(unpacked, nil) }
    return try Message(c: unpacked.pointee)
}

func encodeMessage<Message: CBackedMessage>(_ message: Message) -> [UInt8] {
    let functions = Message.cFunctions
    let arena = CArena()
    return withExtendedLifetime(arena) {
        let root = arena.message(message)
        let size = functions.packedSize(root)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = size == 0 ? 0 : functions.pack(root, buffer.baseAddress)
        }
    }
}

/// Owns the C memory of one message tree being encoded; everything is freed with the arena.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        for allocation in allocations { allocation.deallocate() }
    }

    private func allocate<Element>(_ type: Element.Type, count: Int) -> UnsafeMutablePointer<Element> {
        let pointer = UnsafeMutablePointer<Element>.allocate(capacity: count)
        allocations.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    /// A NUL-terminated copy. protobuf-c measures strings with strlen, so a string with an
    /// embedded NUL is sent cut at the NUL.
    func string(_ value: String) -> UnsafeMutablePointer<CChar> {
        var value = value
        return value.withUTF8 { cString(UnsafeRawBufferPointer($0)) }
    }

    private func cString(_ utf8: UnsafeRawBufferPointer) -> UnsafeMutablePointer<CChar> {
        let pointer = allocate(CChar.self, count: utf8.count + 1)
        if let base = utf8.baseAddress { UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: utf8.count) }
        pointer[utf8.count] = 0
        return pointer
    }

    func bytes(_ value: [UInt8]) -> ProtobufCBinaryData {
        ProtobufCBinaryData(len: value.count, data: array(value))
    }

    /// A copy of `values`; nil when empty (protobuf-c reads no elements then).
    func array<Element>(_ values: [Element]) -> UnsafeMutablePointer<Element>? {
        guard !values.isEmpty else { return nil }
        let pointer = allocate(Element.self, count: values.count)
        _ = UnsafeMutableBufferPointer(start: pointer, count: values.count).initialize(fromContentsOf: values)
        return pointer
    }

    /// All strings share one allocation (texts lists can hold thousands of items).
    func strings(_ values: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard !values.isEmpty else { return nil }
        let pointers = allocate(UnsafeMutablePointer<CChar>?.self, count: values.count)
        let storage = UnsafeMutableRawPointer(allocate(CChar.self, count: values.reduce(0) { $0 + $1.utf8.count + 1 }))
        var offset = 0
        for (index, value) in values.enumerated() {
            var value = value
            value.withUTF8 { utf8 in
                if let base = utf8.baseAddress { (storage + offset).copyMemory(from: base, byteCount: utf8.count) }
                storage.storeBytes(of: 0, toByteOffset: offset + utf8.count, as: CChar.self)
                (pointers + index).initialize(to: (storage + offset).assumingMemoryBound(to: CChar.self))
                offset += utf8.count + 1
            }
        }
        return pointers
    }

    /// Strings where the positions in `malformed` carry their original (invalid UTF-8) bytes.
    func strings(_ values: [String], malformed: [MalformedText]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        let pointers = strings(values)
        for text in malformed where values.indices.contains(text.index) {
            pointers?[text.index] = text.bytes.withUnsafeBytes { cString($0) }
        }
        return pointers
    }

    func byteArrays(_ values: [[UInt8]]) -> UnsafeMutablePointer<ProtobufCBinaryData>? {
        array(values.map { bytes($0) })
    }

    func message<Message: CBackedMessage>(_ value: Message) -> UnsafeMutablePointer<Message.CMessage> {
        let pointer = allocate(Message.CMessage.self, count: 1)
        Message.cFunctions.initialize(pointer)
        value.fill(&pointer.pointee, arena: self)
        return pointer
    }

    func messageIfPresent<Message: CBackedMessage>(_ value: Message?) -> UnsafeMutablePointer<Message.CMessage>? {
        value.map { message($0) }
    }

    func messages<Message: CBackedMessage>(_ values: [Message]) -> UnsafeMutablePointer<UnsafeMutablePointer<Message.CMessage>?>? {
        array(values.map { Optional(message($0)) })
    }
}

/// Reads fields out of a decoded C message, naming the message and field in errors.
struct FieldReader {
    let message: String

    func invalid(_ field: String, _ reason: String) -> WireError {
        .invalidField(message: message, field: field, reason: reason)
    }

    func string(_ pointer: UnsafePointer<CChar>?, _ field: String) throws(WireError) -> String {
        guard let pointer else { return "" }
        guard let value = String(validatingCString: pointer) else { throw invalid(field, "invalid UTF-8") }
        return value
    }

    func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
        array(data.data, data.len)
    }

    func array<Element>(_ pointer: UnsafePointer<Element>?, _ count: Int) -> [Element] {
        guard let pointer, count > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: pointer, count: count))
    }

    func strings(_ pointer: UnsafePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int, _ field: String) throws(WireError) -> [String] {
        var values: [String] = []
        values.reserveCapacity(count)
        for (index, element) in array(pointer, count).enumerated() {
            values.append(try string(element, "\(field)[\(index)]"))
        }
        return values
    }

    /// Strings where invalid UTF-8 fails only its item: it reads as "" and is reported with its bytes.
    func perItemStrings(_ pointer: UnsafePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int) -> ([String], [MalformedText]) {
        var values: [String] = []
        var malformed: [MalformedText] = []
        values.reserveCapacity(count)
        for (index, element) in array(pointer, count).enumerated() {
            guard let element else {
                values.append("")
                continue
            }
            if let value = String(validatingCString: element) {
                values.append(value)
            } else {
                values.append("")
                var length = 0
                while element[length] != 0 { length += 1 }
                malformed.append(MalformedText(index: index, bytes: element.withMemoryRebound(to: UInt8.self, capacity: length) {
                    Array(UnsafeBufferPointer(start: $0, count: length))
                }))
            }
        }
        return (values, malformed)
    }

    func byteArrays(_ pointer: UnsafePointer<ProtobufCBinaryData>?, _ count: Int) -> [[UInt8]] {
        array(pointer, count).map { bytes($0) }
    }

    func enumValue<Value: RawRepresentable>(_ raw: some BinaryInteger, _ field: String) throws(WireError) -> Value where Value.RawValue == Int32 {
        // C stores the wire's int32 in an unsigned enum: truncating restores negative numbers.
        let number = Int32(truncatingIfNeeded: raw)
        guard let value = Value(rawValue: number) else { throw invalid(field, "unknown enum value \(number)") }
        return value
    }

    func enums<CEnum: RawRepresentable, Value: RawRepresentable>(
        _ pointer: UnsafePointer<CEnum>?, _ count: Int, _ field: String
    ) throws(WireError) -> [Value] where CEnum.RawValue: BinaryInteger, Value.RawValue == Int32 {
        var values: [Value] = []
        values.reserveCapacity(count)
        for (index, element) in array(pointer, count).enumerated() {
            values.append(try enumValue(element.rawValue, "\(field)[\(index)]"))
        }
        return values
    }

    func message<Message: CBackedMessage>(_ pointer: UnsafePointer<Message.CMessage>?) throws(WireError) -> Message? {
        guard let pointer else { return nil }
        return try Message(c: pointer.pointee)
    }

    /// A oneof member: protobuf-c sets the case only with the message present.
    func requiredMessage<Message: CBackedMessage>(_ pointer: UnsafePointer<Message.CMessage>?, _ field: String) throws(WireError) -> Message {
        guard let pointer else { throw invalid(field, "missing message") }
        return try Message(c: pointer.pointee)
    }

    func messages<Message: CBackedMessage>(
        _ pointer: UnsafePointer<UnsafeMutablePointer<Message.CMessage>?>?, _ count: Int, _ field: String
    ) throws(WireError) -> [Message] {
        var values: [Message] = []
        values.reserveCapacity(count)
        for (index, element) in array(pointer, count).enumerated() {
            guard let element else { throw invalid("\(field)[\(index)]", "missing message") }
            values.append(try Message(c: element.pointee))
        }
        return values
    }
}
