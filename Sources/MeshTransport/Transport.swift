import CMeshSystem
import CZeroMQ
import Dispatch
import Glibc
import Logging
import Synchronization

/// The transport of one agent: a libzmq context and one I/O thread that owns every socket and runs
/// `zmq_poll` (DESIGN.md §3). Other threads hand it work with `execute`/`run`; the work runs on the
/// I/O thread with the `TransportLoop`, which is where sockets are touched.
///
/// Work reaches the thread through a locked queue plus a one-byte wake-up message on an inproc PAIR
/// socket; a wake-up is sent only when the queue goes from empty to non-empty.
public final class Transport: Sendable {
    public let settings: TransportSettings
    public let security: TransportSecurity
    private let context: Context
    private let queue: WorkQueue
    private let thread: Mutex<pthread_t?>

    /// Starts the I/O thread. `makeHandler` runs on that thread, before any other work.
    ///
    /// Work handed to the loop must not capture the `Transport` itself: if its last reference were
    /// dropped on the I/O thread, `deinit` would try to join the thread it runs on.
    public init(
        settings: TransportSettings = .init(),
        security: TransportSecurity,
        logger: Logger = Logger(label: "mesh.transport"),
        makeHandler: @escaping @Sendable (TransportLoop) -> (any TransportHandler)? = { _ in nil }
    ) throws {
        self.settings = settings
        self.security = security
        let context = try Context()
        if let prefix = settings.zmqThreadNamePrefix {
            zmq_ctx_set(context.handle, ZMQ_THREAD_NAME_PREFIX, prefix)
        }
        let queue = WorkQueue()
        self.context = context
        self.queue = queue
        self.thread = Mutex(nil)

        let wakeEndpoint = context.uniqueInprocEndpoint("wake")
        let started = DispatchSemaphore(value: 0)
        let startError = Mutex<TransportError?>(nil)
        let threadName = settings.threadName
        let tid = try spawnThread {
            setCurrentThreadName(threadName)
            let loop: TransportLoop
            do {
                loop = try TransportLoop(
                    context: context, settings: settings, security: security, logger: logger,
                    wakeEndpoint: wakeEndpoint, takeWork: queue.take)
            } catch {
                startError.withLock { $0 = error as? TransportError ?? TransportError("start", detail: "\(error)") }
                started.signal()
                return
            }
            loop.handler = makeHandler(loop)
            started.signal()
            loop.run()
        }
        started.wait()
        if let error = startError.withLock({ $0 }) {
            pthread_join(tid, nil)
            throw error
        }
        thread.withLock { $0 = tid }
        try queue.attachWaker(context: context, endpoint: wakeEndpoint)
    }

    deinit { shutdown() }

    public var isRunning: Bool { queue.isOpen }

    /// Runs `work` on the I/O thread, soon. Dropped if the transport has shut down.
    public func execute(_ work: @escaping @Sendable (TransportLoop) -> Void) {
        queue.push(work)
    }

    /// Runs `work` on the I/O thread and waits for its result.
    public func run<T: Sendable>(_ work: @escaping @Sendable (TransportLoop) throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        let accepted = queue.push { loop in
            let r = Result { try work(loop) }
            result.withLock { $0 = r }
            done.signal()
        }
        guard accepted else { throw TransportError("run", detail: "transport is shut down") }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Stops the I/O thread, closes every socket, and terminates the context (joining libzmq's own
    /// threads). Idempotent; safe to call from any thread but the I/O thread.
    public func shutdown() {
        queue.closeAfter { loop in loop.stop() }
        if let tid = thread.withLock({ t in defer { t = nil }; return t }) {
            pthread_join(tid, nil)
        }
        queue.closeWaker()
        context.terminate()
    }
}

/// The queue of work for the I/O thread, and the socket that wakes it.
///
/// The waker is a PAIR socket used from many threads; that is allowed because every use happens
/// under the mutex, which gives libzmq the full memory barrier it requires when a socket moves
/// between threads.
final class WorkQueue: Sendable {
    private struct State: ~Copyable {
        var work: [@Sendable (TransportLoop) -> Void] = []
        var waker: Socket?
        var wakePending = false
        var open = true
    }

    private let state = Mutex(State())

    var isOpen: Bool { state.withLock { $0.open } }

    func attachWaker(context: Context, endpoint: String) throws {
        try state.withLock { s in
            let w = try Socket(context, .pair)
            try w.connect(endpoint)
            s.waker = w
            if !s.work.isEmpty { Self.wake(&s) }
        }
    }

    @discardableResult
    func push(_ work: @escaping @Sendable (TransportLoop) -> Void) -> Bool {
        state.withLock { s in
            guard s.open else { return false }
            s.work.append(work)
            Self.wake(&s)
            return true
        }
    }

    /// Queues a last piece of work and refuses everything after it.
    func closeAfter(_ work: @escaping @Sendable (TransportLoop) -> Void) {
        state.withLock { s in
            guard s.open else { return }
            s.open = false
            s.work.append(work)
            Self.wake(&s)
        }
    }

    func take() -> [@Sendable (TransportLoop) -> Void] {
        state.withLock { s in
            s.wakePending = false
            defer { s.work.removeAll(keepingCapacity: true) }
            return s.work
        }
    }

    func closeWaker() {
        state.withLock { s in
            s.waker?.close()
            s.waker = nil
            s.work.removeAll()
        }
    }

    private static func wake(_ s: inout State) {
        guard !s.wakePending, let waker = s.waker else { return }
        s.wakePending = true
        // A full pipe means a wake-up is already on its way.
        waker.send([[]])
    }
}

/// Starts a joinable pthread running `body`.
func spawnThread(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<Box>.fromOpaque(box).release()
        throw TransportError("pthread_create", errno: rc, detail: String(cString: strerror(rc)))
    }
    return tid
}

func setCurrentThreadName(_ name: String) {
    mesh_set_current_thread_name(name)
}
