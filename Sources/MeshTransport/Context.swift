import CZeroMQ
import Synchronization

/// A libzmq context. Every `Socket` holds a strong reference to its context, so the context is
/// terminated only after its last socket has been closed: `zmq_ctx_term` blocks while any socket is
/// open, and a release build that frees the context early would hang in it.
///
/// `@unchecked Sendable`: libzmq documents contexts as thread-safe, and the raw handle is the only
/// state that is not itself Sendable.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    private let nextInprocID = Atomic<Int>(0)
    private let terminated = Atomic<Bool>(false)

    public init(ioThreads: Int32 = 1) throws {
        guard let h = zmq_ctx_new() else { throw TransportError.zmq("zmq_ctx_new") }
        handle = h
        zmq_ctx_set(h, ZMQ_IO_THREADS, ioThreads)
        // Blocking calls must not survive a terminated context.
        zmq_ctx_set(h, ZMQ_BLOCKY, 0)
    }

    /// A fresh name for an inproc endpoint that is unique within this context.
    func uniqueInprocEndpoint(_ prefix: String) -> String {
        let n = nextInprocID.add(1, ordering: .relaxed).newValue
        return "inproc://mesh-\(prefix)-\(n)"
    }

    /// Terminates the context: blocks until every socket of it is closed, then joins libzmq's own
    /// threads. Idempotent; `deinit` calls it too.
    public func terminate() {
        guard !terminated.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Interrupted calls return EINTR; retry until the context is really gone.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    deinit { terminate() }
}

/// libzmq's build: whether it can do CURVE, and its version.
public enum ZeroMQ {
    public static var version: (major: Int32, minor: Int32, patch: Int32) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (a, b, c)
    }

    public static var hasCurve: Bool { zmq_has("curve") != 0 }
}
