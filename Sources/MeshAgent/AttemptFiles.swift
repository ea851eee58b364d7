import Foundation
import MeshCore

/// One attempt's directory on its worker (`DIR/attempts/JOB.ATTEMPT`): what the agent and the
/// attempt's supervisor tell each other, through files that outlive either of them.
///
///     spec.json        the agent: what to run (written before the supervisor starts)
///     workspace/       the agent: the code bundle, unpacked
///     lease            the agent: until when (CLOCK_BOOTTIME, ns) the attempt may run
///     stop             the agent: stop it ("cancelled" or "superseded")
///     supervisor.pid   the supervisor: its pid and start time
///     started.json     the supervisor: the job's process is running
///     log              the supervisor: stdout and stderr, capped
///     results.archive  the supervisor: the results and the log, packed
///     result.json      the supervisor: how it ended (written last, atomically)
struct AttemptFiles {
    let directory: String

    var spec: String { directory + "/spec.json" }
    var workspace: String { directory + "/workspace" }
    var lease: String { directory + "/lease" }
    var stop: String { directory + "/stop" }
    var supervisorPID: String { directory + "/supervisor.pid" }
    var started: String { directory + "/started.json" }
    var log: String { directory + "/log" }
    var resultsArchive: String { directory + "/results.archive" }
    var result: String { directory + "/result.json" }

    /// The supervisor's pid and start time, once it has written them.
    func supervisor() -> (pid: Int32, start: UInt64)? {
        guard let text = try? String(contentsOfFile: supervisorPID, encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: \.isWhitespace)
        guard parts.count == 2, let pid = Int32(parts[0]), let start = UInt64(parts[1]) else { return nil }
        return (pid, start)
    }

    static func name(_ key: Worker.Key) -> String { "\(key.job).\(key.attempt)" }

    static func key(_ name: String) -> Worker.Key? {
        let parts = name.split(separator: ".")
        guard parts.count == 2, let job = UInt64(parts[0]), let attempt = Int(parts[1]) else { return nil }
        return Worker.Key(job: job, attempt: attempt)
    }

    func read<T: Decodable>(_ type: T.Type, _ file: String) -> T? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    func write<T: Encodable>(_ value: T, _ file: String) throws {
        let data = try JSONEncoder().encode(value)
        try writeAtomically(file, Array(data))
    }

    func writeAtomically(_ file: String, _ bytes: [UInt8]) throws {
        let tmp = file + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ArchiveError.io(tmp, errno) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard n == bytes.count, rename(tmp, file) == 0 else { throw ArchiveError.io(file, errno) }
    }
}

/// What the supervisor runs.
struct AttemptSpec: Codable {
    var job: UInt64
    var attempt: Int
    var node: String
    var command: [String]
    var env: [String: String]
    /// Relative to the workspace.
    var workdir: String
    var timeoutSeconds: UInt64
    var results: [String]
    var gpus: [Int]
    var logLimit: UInt64
    var resultsLimit: UInt64
    /// Seconds between SIGTERM and SIGKILL.
    var killGrace: Double
    /// Debug builds only (`debug_unfenced`): the supervisor lets the job outlive its lease.
    var ignoreLease: Bool? = nil
    /// The most result files the attempt may keep (the mesh setting `max_result_files`).
    var maxResultFiles: Int? = nil
    /// `--keep-workspace`: the agent leaves the workspace after the attempt ends.
    var keepWorkspace: Bool? = nil
}

struct AttemptStarted: Codable {
    var pid: Int32
    /// The process's start time in clock ticks since boot (/proc/PID/stat), so a reused pid is
    /// never taken for it.
    var startTime: UInt64
    var at: Int64
}

struct AttemptResult: Codable {
    enum Kind: String, Codable { case exited, signalled, timedOut, cancelled, lost, failedToStart, rejected }
    var kind: Kind
    var code: Int32 = 0
    var reason: String = ""
    var results: [Result] = []
    /// Results refused, with why.
    var refused: [String] = []
    var archiveHash: String?
    var archiveSize: UInt64 = 0
    var logBytes: UInt64 = 0
    var endedAt: Int64

    struct Result: Codable {
        var path: String
        var size: UInt64
        var sha256: String
    }

    var outcome: AttemptOutcome {
        switch kind {
        case .exited: .exited(code)
        case .signalled: .signalled(code)
        case .timedOut: .timedOut
        case .cancelled: .cancelled
        case .lost: .lost(reason)
        case .failedToStart: .failedToStart(reason)
        case .rejected: .rejected(reason)
        }
    }
}

/// A process identity that survives pid reuse: (pid, start time).
enum ProcessIdentity {
    /// Field 22 of /proc/PID/stat, or nil if there is no such process.
    static func startTime(_ pid: Int32) -> UInt64? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, so start time (22) is index 19.
        guard fields.count > 19, let t = UInt64(fields[19]) else { return nil }
        return t
    }

    static func alive(_ pid: Int32, startTime: UInt64) -> Bool {
        self.startTime(pid) == startTime
    }

    static func parent(_ pid: Int32) -> Int32? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }
}

public func unixMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
