import CZeroMQ

/// A blocking client for one agent: a DEALER and its monitor, owned by the calling thread. The CLI
/// uses it from its main thread; it is never used from a Swift task, where a blocking poll would stall
/// the cooperative pool.
///
/// It waits for the CURVE handshake before sending, so it can say *why* an agent does not answer:
/// nothing listens there, the handshake was refused (wrong key), or the agent is silent.
public final class RequestClient {
    public let endpoint: String
    private let context: Context
    private let socket: Socket
    private let monitor: Monitor
    private var tracker = ConnectionTracker()

    public init(endpoint: String, security: ClientSecurity, settings: TransportSettings = .init()) throws {
        self.endpoint = endpoint
        context = try Context()
        socket = try Socket(context, .dealer)
        try socket.configureDealer(settings, security: security)
        monitor = try socket.monitor()
        try socket.connect(endpoint)
    }

    deinit { close() }

    public func close() {
        socket.close()
        monitor.close()
        context.terminate()
    }

    /// Waits until the handshake has succeeded, or throws what went wrong.
    public func waitConnected(timeout: Duration) throws(RequestError) {
        let deadline = ContinuousClock.now + timeout
        while !tracker.isEstablished {
            let left = deadline - .now
            guard left > .zero else { throw .timedOut(diagnosis) }
            try pollMonitor(timeout: left)
        }
    }

    /// Sends one message and waits for one message back.
    public func request(_ frames: [[UInt8]], timeout: Duration) throws(RequestError) -> ReceivedMessage {
        let deadline = ContinuousClock.now + timeout
        try waitConnected(timeout: timeout)
        try send(frames)
        return try receive(timeout: deadline - .now)
    }

    public func send(_ frames: [[UInt8]]) throws(RequestError) {
        switch socket.send(frames) {
        case .sent: return
        case .wouldBlock, .unreachable: throw .timedOut(diagnosis)
        case .failed(let e): throw .transport(e)
        }
    }

    /// Waits for the next message on the connection.
    public func receive(timeout: Duration) throws(RequestError) -> ReceivedMessage {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let m = try? socket.receive() { return m }
            let left = deadline - .now
            guard left > .zero else { throw .timedOut(diagnosis) }
            var items = [
                zmq_pollitem_t(socket: socket.pollHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
                zmq_pollitem_t(socket: monitor.socket.pollHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
            ]
            if zmq_poll(&items, 2, Int(left.millisecondsRoundedUp)) < 0, zmq_errno() != EINTR {
                throw .transport(.zmq("zmq_poll"))
            }
            if items[1].revents != 0 { try drainMonitor() }
        }
    }

    private func pollMonitor(timeout: Duration) throws(RequestError) {
        var items = [zmq_pollitem_t(socket: monitor.socket.pollHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)]
        if zmq_poll(&items, 1, Int(timeout.millisecondsRoundedUp)) < 0, zmq_errno() != EINTR {
            throw .transport(.zmq("zmq_poll"))
        }
        try drainMonitor()
    }

    private func drainMonitor() throws(RequestError) {
        while let r = monitor.next() {
            if case .handshakeFailed(let f) = tracker.observe(r.event) {
                // A connection closed mid-handshake is what an agent with another key does, but also
                // what an agent that is dying does (the chaos harness's kill -9 made clients blame the
                // key): only the same answer on three connections in a row (libzmq reconnects) is a verdict.
                if case .noDetail = f {
                    closedDuringHandshake += 1
                    if closedDuringHandshake < 3 { continue }
                }
                throw .handshakeFailed(f)
            }
        }
    }

    private var closedDuringHandshake = 0

    /// What the monitor saw, for a timeout's message.
    public var diagnosis: ConnectionDiagnosis { tracker.diagnosis }
}

/// What a client knows about a connection that gave no answer.
public enum ConnectionDiagnosis: Sendable, Equatable, CustomStringConvertible {
    /// A TCP connect failed and libzmq is retrying (refused or unreachable).
    case refused
    /// No TCP connection was made in the time.
    case noConnection
    /// TCP connected but the security handshake did not finish.
    case handshakeIncomplete
    /// The connection was up, but no reply came.
    case connectedButSilent

    public var description: String {
        switch self {
        case .refused: "connection refused"
        case .noConnection: "no connection"
        case .handshakeIncomplete: "connected, but the security handshake did not complete"
        case .connectedButSilent: "connected, but no reply"
        }
    }
}

/// Why a request to an agent failed.
public enum RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    case timedOut(ConnectionDiagnosis)
    case handshakeFailed(HandshakeFailure)
    case transport(TransportError)

    public var description: String {
        switch self {
        case .timedOut(let d): "no answer in time (\(d))"
        case .handshakeFailed(let f): "security handshake failed: \(f)"
        case .transport(let e): "\(e)"
        }
    }
}
