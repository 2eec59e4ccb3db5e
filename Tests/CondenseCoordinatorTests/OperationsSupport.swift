import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
private let streamSocket = Int32(SOCK_STREAM.rawValue)
#else
import Darwin
private let streamSocket = SOCK_STREAM
#endif

enum HTTPTestError: Error { case socket(String), malformedReply(String), malformedExposition(String) }

/// A reply of the operations port.
struct HTTPReply {
    var status: Int
    /// Header names lowercased.
    var headers: [String: String]
    var body: String
}

/// One HTTP/1.1 request to 127.0.0.1:`port` on a plain socket (`Connection: close`, read to EOF).
/// The blocking socket calls run on a Dispatch thread, not on the cooperative pool the servers use.
func http(_ method: String = "GET", port: Int, _ path: String) async throws -> HTTPReply {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try blockingHTTP(method, port: port, path) })
        }
    }
}

private func blockingHTTP(_ method: String, port: Int, _ path: String) throws -> HTTPReply {
    let socketFD = socket(AF_INET, streamSocket, 0)
    guard socketFD >= 0 else { throw HTTPTestError.socket("socket() failed") }
    defer { close(socketFD) }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw HTTPTestError.socket("cannot connect to port \(port)") }
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
        let count = request[sent...].withUnsafeBytes { send(socketFD, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { throw HTTPTestError.socket("send failed") }
        sent += count
    }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(socketFD, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw HTTPTestError.socket("recv failed (timeout?)") }
        if count == 0 { break }
        reply += chunk[..<count]
    }
    return try parseReply(String(decoding: reply, as: UTF8.self))
}

private func parseReply(_ text: String) throws -> HTTPReply {
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPTestError.malformedReply(text) }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ", maxSplits: 2)
    guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
        throw HTTPTestError.malformedReply(lines[0])
    }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { throw HTTPTestError.malformedReply(line) }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let body = String(text[split.upperBound...])
    guard headers["content-length"] == String(body.utf8.count) else {
        throw HTTPTestError.malformedReply("Content-Length \(headers["content-length"] ?? "missing") for \(body.utf8.count) bytes")
    }
    return HTTPReply(status: status, headers: headers, body: body)
}

/// A scrape of `/metrics`, parsed by the rules of the Prometheus text format 0.0.4: `# HELP` and
/// `# TYPE` once per family and before its samples, sample lines `name{label="value",...} value`
/// with escaped label values. Throws on anything else.
struct Exposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    private(set) var types: [String: String] = [:]
    private(set) var samples: [Sample] = []

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw HTTPTestError.malformedExposition("no final newline") }
        var helped: Set<String> = []
        for line in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("# HELP ") {
                let name = String(line.dropFirst(7).prefix { $0 != " " })
                guard helped.insert(name).inserted, types[name] == nil else { throw HTTPTestError.malformedExposition("HELP twice or late: \(line)") }
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[1]),
                    types[String(parts[0])] == nil
                else { throw HTTPTestError.malformedExposition("bad TYPE line: \(line)") }
                types[String(parts[0])] = String(parts[1])
            } else {
                let sample = try Self.sample(line)
                guard declares(sample.name) else {
                    throw HTTPTestError.malformedExposition("sample before its TYPE: \(line)")
                }
                samples.append(sample)
            }
        }
    }

    /// The value of the sample with exactly these labels; nil when absent.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// Whether a sample named `name` belongs to a declared family: its own, or a histogram's
    /// `_bucket`, `_sum` or `_count`.
    private func declares(_ name: String) -> Bool {
        if types[name] != nil { return true }
        return ["_bucket", "_sum", "_count"].contains { suffix in
            name.hasSuffix(suffix) && types[String(name.dropLast(suffix.count))] == "histogram"
        }
    }

    private static func sample(_ line: String) throws -> Sample {
        var rest = Substring(line)
        let name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" })
        guard !name.isEmpty else { throw HTTPTestError.malformedExposition("no metric name: \(line)") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let label = String(rest.prefix { $0 != "=" })
                rest = rest.dropFirst(label.count)
                guard rest.hasPrefix("=\"") else { throw HTTPTestError.malformedExposition("bad label in: \(line)") }
                rest = rest.dropFirst(2)
                var value = ""
                while let character = rest.first, character != "\"" {
                    rest = rest.dropFirst()
                    if character == "\\" {
                        switch rest.first {
                        case "n": value.append("\n")
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        default: throw HTTPTestError.malformedExposition("bad escape in: \(line)")
                        }
                        rest = rest.dropFirst()
                    } else {
                        value.append(character)
                    }
                }
                guard rest.first == "\"" else { throw HTTPTestError.malformedExposition("unterminated label value: \(line)") }
                rest = rest.dropFirst()
                guard labels.updateValue(value, forKey: label) == nil else { throw HTTPTestError.malformedExposition("label twice: \(line)") }
                if rest.first == "," { rest = rest.dropFirst() }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw HTTPTestError.malformedExposition("no value separator: \(line)") }
        let text = rest.dropFirst()
        let value: Double? = switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
        guard let value else { throw HTTPTestError.malformedExposition("bad value: \(line)") }
        return Sample(name: name, labels: labels, value: value)
    }
}
