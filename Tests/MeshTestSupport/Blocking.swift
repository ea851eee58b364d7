import Foundation
import Synchronization

/// Runs blocking work (a ZeroMQ poll, a semaphore, waitpid) on a thread of its own and awaits it,
/// so tests never block the two threads of Swift's cooperative pool. `body` runs in the calling
/// task (on an executor that is that thread), so its `#expect`s are recorded against the test that
/// called it, not as an issue of an unknown test.
public func onThread<T: Sendable>(
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    let thread = ThreadExecutor()
    defer { thread.finish() }
    return try await withTaskExecutorPreference(thread) { try await runHere(body) }
}

/// Runs `body` on the executor the task prefers (nonisolated async: no hop elsewhere).
private func runHere<T: Sendable>(_ body: @Sendable () throws -> T) async throws -> T {
    try body()
}

/// A task executor that is one thread of its own, running the jobs given to it in order until
/// `finish()`.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false

    init() {
        let t = Thread { [self] in run() }
        t.name = "test blocking"
        t.stackSize = 4 << 20
        t.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread ends once the jobs it has are done.
    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !finished { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
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

/// How many tests that start `mesh` processes run at once (`MESH_TEST_PROCESS_SLOTS`, default three
/// a core). `onThread` lets every such test start at once, and on a small machine dozens of
/// meshes then starve each other until a join or an election misses a bound that it meets with
/// room to spare on a machine of its own.
public let processSlots = ProcessSlots(
    ProcessInfo.processInfo.environment["MESH_TEST_PROCESS_SLOTS"].flatMap { Int($0) }.map { max($0, 1) }
        ?? max(4, 3 * ProcessInfo.processInfo.activeProcessorCount))

/// A counting semaphore for async tests: waiting holds no thread.
public actor ProcessSlots {
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(_ count: Int) { free = count }

    public func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    public func release() {
        if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
    }
}

/// `onThread` for a test that runs real `mesh` processes: it first waits for one of the
/// `processSlots`, and gives it back when `body` returns or throws.
public func onProcessThread<T: Sendable>(
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    await processSlots.acquire()
    do {
        let result = try await onThread(body)
        await processSlots.release()
        return result
    } catch {
        await processSlots.release()
        throw error
    }
}
