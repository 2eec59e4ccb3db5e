/// Metrics as the operations port serves them: Prometheus text exposition format 0.0.4.
///
/// Written by hand rather than with swift-prometheus / swift-metrics: every value here is read on
/// scrape from whoever owns it (the schedulers' actors, the job store, the RPC server's per-loop
/// call tables), never pushed into a global registry on each change, so a process started without
/// `--metrics-listen` does no metrics work at all; and the format needs only this small writer,
/// not two more package dependencies.
public struct MetricFamily: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// e.g. `condense_rpc_requests_total`.
    public var name: String
    public var help: String
    public var kind: Kind
    public var samples: [MetricSample]

    public init(name: String, help: String, kind: Kind, samples: [MetricSample]) {
        self.name = name
        self.help = help
        self.kind = kind
        self.samples = samples
    }

    /// One unlabelled value.
    public static func gauge(_ name: String, help: String, _ value: Double) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .gauge, samples: [MetricSample(value)])
    }

    /// One unlabelled value that only grows.
    public static func counter(_ name: String, help: String, _ value: Double) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .counter, samples: [MetricSample(value)])
    }

    /// One value per value of `label`, in the order given.
    public static func gauge(_ name: String, help: String, by label: String, _ values: [(String, Double)]) -> MetricFamily {
        MetricFamily(
            name: name, help: help, kind: .gauge,
            samples: values.map { MetricSample($0.1, labels: [MetricLabel(label, $0.0)]) })
    }
}

/// One line of a family: `name<suffix>{labels} value`.
public struct MetricSample: Sendable, Equatable {
    /// Appended to the family's name: empty, or `_bucket`, `_sum`, `_count` for histograms.
    public var suffix: String
    public var labels: [MetricLabel]
    public var value: Double

    public init(_ value: Double, suffix: String = "", labels: [MetricLabel] = []) {
        self.suffix = suffix
        self.labels = labels
        self.value = value
    }
}

public struct MetricLabel: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A histogram's counts for one label set: `buckets[i]` counts observations `<= bounds[i]` and
/// above the bound before it; the last entry counts those above every bound.
public struct HistogramCounts: Sendable, Equatable {
    public var buckets: [UInt64]
    public var sum: Double

    public init(bucketCount: Int) {
        buckets = [UInt64](repeating: 0, count: bucketCount + 1)
        sum = 0
    }

    public var count: UInt64 { buckets.reduce(0, +) }

    public mutating func observe(_ value: Double, bounds: [Double]) {
        buckets[bounds.firstIndex { value <= $0 } ?? bounds.count] += 1
        sum += value
    }

    public mutating func add(_ other: HistogramCounts) {
        for index in buckets.indices where index < other.buckets.count { buckets[index] += other.buckets[index] }
        sum += other.sum
    }

    /// `_bucket` lines (cumulative, `le` last, ending with `+Inf`), `_sum` and `_count`.
    public func samples(bounds: [Double], labels: [MetricLabel]) -> [MetricSample] {
        var samples: [MetricSample] = []
        var cumulative: UInt64 = 0
        for (index, count) in buckets.enumerated() {
            cumulative += count
            let bound = index < bounds.count ? PrometheusText.format(bounds[index]) : "+Inf"
            samples.append(MetricSample(Double(cumulative), suffix: "_bucket", labels: labels + [MetricLabel("le", bound)]))
        }
        samples.append(MetricSample(sum, suffix: "_sum", labels: labels))
        samples.append(MetricSample(Double(cumulative), suffix: "_count", labels: labels))
        return samples
    }
}

/// Reads metrics on demand (one scrape of `/metrics`).
public typealias MetricsCollector = @Sendable () async -> [MetricFamily]

/// The Prometheus text format, version 0.0.4.
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ families: [MetricFamily]) -> String {
        var text = ""
        for family in families {
            text += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            text += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                text += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    text += "{" + sample.labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",") + "}"
                }
                text += " \(format(sample.value))\n"
            }
        }
        return text
    }

    /// Whole numbers without a fraction (counts stay exact up to 2^53), `+Inf`, `-Inf`, `NaN`.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 { return String(Int64(value)) }
        return "\(value)"
    }

    private static func escapeHelp(_ text: String) -> String { escape(text, quotes: false) }

    private static func escapeLabelValue(_ text: String) -> String { escape(text, quotes: true) }

    /// Backslash and newline always; double quotes inside label values.
    private static func escape(_ text: String, quotes: Bool) -> String {
        var escaped = ""
        // Scalars, not Characters: "\r\n" is one Character and would hide its "\n".
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"" where quotes: escaped += "\\\""
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
