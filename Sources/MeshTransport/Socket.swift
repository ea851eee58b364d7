import CZeroMQ

/// One libzmq socket. Not Sendable: a socket is used only by the thread that owns it (the
/// transport's I/O thread, or the thread of a blocking `RequestClient`).
///
/// The socket holds its `Context` strongly, so the context cannot be terminated while the socket is
/// open, whatever order ARC chooses to release things in.
public final class Socket {
    /// The socket types the mesh uses.
    public enum Kind: Sendable {
        case router, dealer, pair, rep, req

        var zmqType: Int32 {
            switch self {
            case .router: ZMQ_ROUTER
            case .dealer: ZMQ_DEALER
            case .pair: ZMQ_PAIR
            case .rep: ZMQ_REP
            case .req: ZMQ_REQ
            }
        }
    }

    /// What a non-blocking send did.
    public enum SendOutcome: Equatable, Sendable {
        case sent
        /// The high-water mark is reached, or (with `ZMQ_IMMEDIATE`) there is no connection yet.
        case wouldBlock
        /// A ROUTER with `ROUTER_MANDATORY` has no connection with that routing id any more.
        case unreachable
        case failed(TransportError)
    }

    public let context: Context
    public let kind: Kind
    private(set) var handle: UnsafeMutableRawPointer?
    private var monitoring = false

    public init(_ context: Context, _ kind: Kind) throws {
        guard let h = zmq_socket(context.handle, kind.zmqType) else {
            throw TransportError.zmq("zmq_socket")
        }
        self.context = context
        self.kind = kind
        self.handle = h
        // Nothing may wait for unsent messages at close: a dead peer would hang shutdown.
        try setOption(ZMQ_LINGER, 0)
    }

    deinit { close() }

    public var isOpen: Bool { handle != nil }

    /// Closes the socket (idempotent). Monitors of this socket see `monitorStopped`.
    public func close() {
        guard let h = handle else { return }
        if monitoring { zmq_socket_monitor(h, nil, 0) }
        zmq_close(h)
        handle = nil
    }

    private func open(_ operation: String) throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw TransportError(operation, detail: "socket is closed") }
        return h
    }

    // MARK: Options

    public func setOption(_ option: Int32, _ value: Int32) throws {
        let h = try open("zmq_setsockopt")
        var v = value
        if zmq_setsockopt(h, option, &v, MemoryLayout<Int32>.size) != 0 {
            throw TransportError.zmq("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, int64 value: Int64) throws {
        let h = try open("zmq_setsockopt")
        var v = value
        if zmq_setsockopt(h, option, &v, MemoryLayout<Int64>.size) != 0 {
            throw TransportError.zmq("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let h = try open("zmq_setsockopt")
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw TransportError.zmq("zmq_setsockopt(\(option))") }
    }

    public func setOption(_ option: Int32, string: String) throws {
        try setOption(option, bytes: Array(string.utf8))
    }

    public func intOption(_ option: Int32) throws -> Int32 {
        let h = try open("zmq_getsockopt")
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(h, option, &v, &size) != 0 { throw TransportError.zmq("zmq_getsockopt(\(option))") }
        return v
    }

    public func stringOption(_ option: Int32) throws -> String {
        let h = try open("zmq_getsockopt")
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        if zmq_getsockopt(h, option, &buffer, &size) != 0 { throw TransportError.zmq("zmq_getsockopt(\(option))") }
        return String(nulTerminated: buffer)
    }

    // MARK: Endpoints

    /// Binds and returns the endpoint actually bound (with the port the kernel chose for `:*`).
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        let h = try open("bind")
        if zmq_bind(h, endpoint) != 0 { throw TransportError.zmq("bind \(endpoint)") }
        return (try? stringOption(ZMQ_LAST_ENDPOINT)) ?? endpoint
    }

    public func connect(_ endpoint: String) throws {
        let h = try open("connect")
        if zmq_connect(h, endpoint) != 0 { throw TransportError.zmq("connect \(endpoint)") }
    }

    public func disconnect(_ endpoint: String) {
        guard let h = handle else { return }
        zmq_disconnect(h, endpoint)
    }

    public func unbind(_ endpoint: String) {
        guard let h = handle else { return }
        zmq_unbind(h, endpoint)
    }

    // MARK: Messages

    /// Sends a multipart message. With `wait: false` (the default) it never blocks: a full queue or,
    /// on a DEALER with `IMMEDIATE`, a missing connection gives `.wouldBlock` and nothing is sent.
    /// libzmq delivers multipart messages atomically, so either all frames go or none.
    @discardableResult
    public func send(_ frames: [[UInt8]], wait: Bool = false) -> SendOutcome {
        guard let h = handle else { return .failed(TransportError("send", detail: "socket is closed")) }
        precondition(!frames.isEmpty, "a message has at least one frame")
        let last = frames.count - 1
        for (i, frame) in frames.enumerated() {
            var msg = zmq_msg_t()
            guard zmq_msg_init_size(&msg, frame.count) == 0 else { return .failed(.zmq("zmq_msg_init_size")) }
            if !frame.isEmpty {
                frame.withUnsafeBytes { src in
                    zmq_msg_data(&msg).copyMemory(from: src.baseAddress!, byteCount: src.count)
                }
            }
            var flags: Int32 = wait ? 0 : ZMQ_DONTWAIT
            if i < last { flags |= ZMQ_SNDMORE }
            if zmq_msg_send(&msg, h, flags) < 0 {
                let err = TransportError.zmq("send")
                zmq_msg_close(&msg)
                switch err.errno {
                case EAGAIN where i == 0: return .wouldBlock
                case EHOSTUNREACH where i == 0: return .unreachable
                default: return .failed(err)
                }
            }
            // zmq_msg_send took ownership of the message on success.
        }
        return .sent
    }

    /// Receives one multipart message, or nil when none is waiting (and `wait` is false).
    /// Frames beyond `maxFrames` are read and discarded, and the message is marked truncated, so a
    /// sender cannot make the receiver hold an unbounded number of frames.
    public func receive(wait: Bool = false, maxFrames: Int = 64, readMetadata: Bool = true) throws -> ReceivedMessage? {
        let h = try open("receive")
        var frames: [[UInt8]] = []
        var userID: String?
        var peerAddress: String?
        var truncated = false
        var flags: Int32 = wait ? 0 : ZMQ_DONTWAIT
        while true {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            if zmq_msg_recv(&msg, h, flags) < 0 {
                let err = TransportError.zmq("receive")
                zmq_msg_close(&msg)
                if err.errno == EAGAIN && frames.isEmpty { return nil }
                throw err
            }
            let size = zmq_msg_size(&msg)
            if frames.count < maxFrames {
                if size == 0 {
                    frames.append([])
                } else {
                    let data = zmq_msg_data(&msg)!
                    frames.append([UInt8](UnsafeRawBufferPointer(start: data, count: size)))
                }
            } else {
                truncated = true
            }
            let more = zmq_msg_more(&msg) != 0
            // Every frame of a message carries the connection's metadata; read it once, from the
            // last frame (a ROUTER's routing-id frame has none).
            if !more && readMetadata {
                if let p = zmq_msg_gets(&msg, "User-Id") { userID = String(cString: p) }
                if let p = zmq_msg_gets(&msg, "Peer-Address") { peerAddress = String(cString: p) }
            }
            zmq_msg_close(&msg)
            if !more { break }
            // The rest of a multipart message has arrived with its first frame.
            flags = 0
        }
        return ReceivedMessage(frames: frames, userID: userID, peerAddress: peerAddress, truncated: truncated)
    }

    // MARK: Monitor

    /// Starts libzmq's socket monitor and returns the PAIR socket that receives its events.
    public func monitor(events: Int32 = ZMQ_EVENT_ALL) throws -> Monitor {
        let h = try open("monitor")
        let endpoint = context.uniqueInprocEndpoint("monitor")
        if zmq_socket_monitor(h, endpoint, events) != 0 { throw TransportError.zmq("zmq_socket_monitor") }
        monitoring = true
        let pair = try Socket(context, .pair)
        try pair.connect(endpoint)
        return Monitor(socket: pair)
    }

    /// For `zmq_poll`.
    var pollHandle: UnsafeMutableRawPointer? { handle }
}

/// A multipart message as received, with what libzmq knows of the connection it came on.
public struct ReceivedMessage: Sendable {
    public var frames: [[UInt8]]
    /// The user id that the ZAP handler gave the connection ("peer" or "client"), or nil on
    /// connections without ZAP (inproc, plaintext).
    public var userID: String?
    /// The remote IP address, when libzmq knows it.
    public var peerAddress: String?
    /// More frames arrived than the receiver keeps; the extra ones were dropped.
    public var truncated: Bool

    public init(frames: [[UInt8]], userID: String? = nil, peerAddress: String? = nil, truncated: Bool = false) {
        self.frames = frames
        self.userID = userID
        self.peerAddress = peerAddress
        self.truncated = truncated
    }
}
