import ArgumentParser
import Foundation
import Logging
import MeshAgent
import MeshCore

enum FileHandleWriter {
    static func stderr(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// A log level as a command-line value.
struct LogLevelArgument: ExpressibleByArgument {
    var level: Logger.Level
    init?(argument: String) {
        guard let l = Logger.Level(rawValue: argument.lowercased()) else { return nil }
        level = l
    }
    static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
}

/// Sends swift-log's output to stderr at the chosen level (once per process).
enum Logging {
    private nonisolated(unsafe) static var done = false

    static func bootstrap(_ option: LogLevelArgument?) {
        guard !done else { return }
        done = true
        let env = ProcessInfo.processInfo.environment["MESH_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) }
        let level = option?.level ?? env ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }
}

/// A duration on the command line: `250ms`, `3s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
struct TimeSpan: ExpressibleByArgument, CustomStringConvertible {
    var duration: Duration
    let text: String

    init(_ duration: Duration, text: String) {
        self.duration = duration
        self.text = text
    }

    init?(argument: String) {
        guard let d = TimeSpan.parse(argument) else { return nil }
        duration = d
        text = argument
    }

    var description: String { text }
    var defaultValueDescription: String { text }

    static func parse(_ s: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(s.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let v = Double(number), v.isFinite, v >= 0 else { return nil }
        return .seconds(double: v * scale)  // (saturating: `1e300h` is not a crash)
    }
}

extension TimeSpan {
    /// Refuses a duration outside `range` (seconds) with the bound in the message (exit 64):
    /// every duration that goes into the mesh has one, so that no arithmetic on it can overflow.
    static func check(_ span: TimeSpan?, _ option: String, _ range: ClosedRange<Double>) throws {
        guard let span else { return }
        guard range.contains(span.duration.seconds) else {
            throw ValidationError("\(option) is from \(describe(range.lowerBound)) to \(describe(range.upperBound)), not \(span.text)")
        }
    }

    /// `2592000` → "30 days (2592000 s)", `3600` → "1 h", `0.001` → "1 ms".
    static func describe(_ seconds: Double) -> String {
        if seconds == 0 { return "0" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds >= 86_400, seconds.truncatingRemainder(dividingBy: 86_400) == 0 { return "\(Int(seconds / 86_400)) days (\(Int(seconds)) s)" }
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600)) h" }
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}

/// Refuses a number outside `range` with the bound in the message (exit 64).
func checkBound<T: Comparable & CustomStringConvertible>(_ value: T?, _ option: String, _ range: ClosedRange<T>) throws {
    guard let value else { return }
    guard range.contains(value) else { throw ValidationError("\(option) is from \(range.lowerBound) to \(range.upperBound), not \(value)") }
}

extension Duration {
    var milliseconds: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) / 1e15
    }
}

/// Reads the cluster key a client command should use: `--key FILE`, else the data directory's.
func loadSecret(keyFile: String?, data: DataOptions) throws -> ClusterSecretSource {
    if let keyFile {
        guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
            throw AgentError.badClusterKey(keyFile, "cannot read the file")
        }
        do {
            return ClusterSecretSource(secret: try .init(text: text), origin: keyFile)
        } catch {
            throw AgentError.badClusterKey(keyFile, error.description)
        }
    }
    let dir = data.directory
    return ClusterSecretSource(secret: try dir.readKey(), origin: dir.keyFile)
}

import MeshTransport

struct ClusterSecretSource {
    var secret: ClusterSecret
    var origin: String
}

/// JSON output for `--json`: sorted keys, one document.
func printJSON(_ value: some Encodable) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}
