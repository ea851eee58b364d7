import Foundation
import Synchronization

/// Runs blocking work (a ZeroMQ poll, a semaphore, waitpid) on a thread of its own and awaits it,
/// so tests never block the two threads of Swift's cooperative pool.
public func onThread<T: Sendable>(
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
        let t = Thread {
            c.resume(with: Result { try body() })
        }
        t.stackSize = 1 << 20
        t.start()
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns whether it
/// held. Swift Testing's time limits are whole minutes, so tests bound their waits with this.
public func eventually(
    timeout: Duration = .seconds(10), every: Duration = .milliseconds(5),
    _ condition: @Sendable () throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: every)
    }
    return try condition()
}

/// Races `body` against a deadline and fails with `TimedOut` if the deadline wins.
public func withTimeout<T: Sendable>(
    _ timeout: Duration, _ what: String = "operation",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TimedOut(what: what, after: timeout)
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}

public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var after: Duration
    public var description: String { "\(what) did not finish within \(after)" }
}

/// A value that the I/O thread writes and the test reads.
public final class Box<T: Sendable>: Sendable {
    private let m: Mutex<T>
    public init(_ value: T) { m = Mutex(value) }
    public var value: T {
        get { m.withLock { $0 } }
    }
    public func set(_ v: T) { m.withLock { $0 = v } }
    public func update<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&$0) } }
}

/// A fresh directory under the system's temporary directory, removed by `remove()`. Paths stay
/// short because a ZeroMQ ipc socket path must fit in 107 bytes.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "mesh") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else {
            throw CocoaError(.fileWriteUnknown)
        }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func sub(_ name: String) -> String { path + "/" + name }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Thread names of this process, from /proc/self/task/*/comm.
public func currentThreadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { tid in
        (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
