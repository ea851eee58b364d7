import CZeroMQ

/// What libzmq's socket monitor reports, as typed events.
public enum MonitorEvent: Sendable, Equatable, CustomStringConvertible {
    case connected
    case connectDelayed
    /// A connect failed (refused, unreachable) and libzmq will retry after the given interval.
    case connectRetried(afterMilliseconds: Int)
    case listening
    case bindFailed(errno: Int32)
    case accepted
    case acceptFailed(errno: Int32)
    case closed
    case closeFailed(errno: Int32)
    /// An established connection ended: the peer closed it, a heartbeat timed out, or a message was
    /// over `MAXMSGSIZE`.
    case disconnected
    case handshakeSucceeded
    case handshakeFailed(HandshakeFailure)
    case monitorStopped
    case unknown(event: UInt16, value: UInt32)

    public var description: String {
        switch self {
        case .connected: "connected"
        case .connectDelayed: "connect delayed"
        case .connectRetried(let ms): "connect retried in \(ms) ms"
        case .listening: "listening"
        case .bindFailed(let e): "bind failed: \(String(cString: zmq_strerror(e)))"
        case .accepted: "accepted"
        case .acceptFailed(let e): "accept failed: \(String(cString: zmq_strerror(e)))"
        case .closed: "closed"
        case .closeFailed(let e): "close failed: \(String(cString: zmq_strerror(e)))"
        case .disconnected: "disconnected"
        case .handshakeSucceeded: "handshake succeeded"
        case .handshakeFailed(let f): "handshake failed: \(f)"
        case .monitorStopped: "monitor stopped"
        case .unknown(let e, let v): "event 0x\(String(e, radix: 16)) (\(v))"
        }
    }
}

/// Why a ZMTP handshake failed.
public enum HandshakeFailure: Sendable, Equatable, CustomStringConvertible {
    /// The connection closed during the handshake without a reason (often: the other side could not
    /// decrypt our HELLO because we used the wrong server key, and hung up).
    case noDetail(errno: Int32)
    /// A ZMTP or CURVE protocol error (`ZMQ_PROTOCOL_ERROR_*`), e.g. a cryptographic failure.
    case protocolError(code: UInt32)
    /// The ZAP handler refused the client's credentials, with its status code (400 = not allowed).
    case authentication(status: UInt32)

    public var description: String {
        switch self {
        case .noDetail: "the other side closed the connection during the handshake"
        case .protocolError(let code): "protocol error: \(HandshakeFailure.describe(protocolError: code))"
        case .authentication(let status): "authentication refused (ZAP status \(status))"
        }
    }

    static func describe(protocolError code: UInt32) -> String {
        switch Int32(bitPattern: code) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "cryptographic error (the keys do not match)"
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "security mechanism mismatch (one side uses CURVE, the other does not)"
        case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND: "unexpected ZMTP command"
        case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE: "invalid ZMTP sequence"
        case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: "key exchange failed"
        case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_METADATA: "invalid metadata"
        case ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED, ZMQ_PROTOCOL_ERROR_ZAP_MALFORMED_REPLY,
             ZMQ_PROTOCOL_ERROR_ZAP_BAD_REQUEST_ID, ZMQ_PROTOCOL_ERROR_ZAP_BAD_VERSION,
             ZMQ_PROTOCOL_ERROR_ZAP_INVALID_STATUS_CODE, ZMQ_PROTOCOL_ERROR_ZAP_INVALID_METADATA:
            "the authentication handler failed"
        default: "malformed ZMTP command (0x\(String(code, radix: 16)))"
        }
    }

    /// Whether the failure says the keys are wrong rather than that the network hiccupped.
    public var isKeyMismatch: Bool {
        switch self {
        case .authentication: true
        case .protocolError(let code):
            Int32(bitPattern: code) == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
                || Int32(bitPattern: code) == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
        case .noDetail: false
        }
    }
}

/// One monitor report: the event and the endpoint it concerns.
public struct MonitorRecord: Sendable, Equatable {
    public var event: MonitorEvent
    public var endpoint: String

    /// Parses libzmq's two-frame monitor message: 6 bytes (uint16 event, uint32 value, in host
    /// order), then the endpoint. Returns nil for anything else.
    public init?(frames: [[UInt8]]) {
        guard frames.count >= 2, frames[0].count >= 6 else { return nil }
        let f = frames[0]
        let event = UInt16(f[0]) | UInt16(f[1]) << 8
        let value = UInt32(f[2]) | UInt32(f[3]) << 8 | UInt32(f[4]) << 16 | UInt32(f[5]) << 24
        self.endpoint = String(decoding: frames[1], as: UTF8.self)
        self.event = MonitorRecord.event(Int32(event), value: value)
    }

    public init(event: MonitorEvent, endpoint: String) {
        self.event = event
        self.endpoint = endpoint
    }

    static func event(_ event: Int32, value: UInt32) -> MonitorEvent {
        switch event {
        case ZMQ_EVENT_CONNECTED: .connected
        case ZMQ_EVENT_CONNECT_DELAYED: .connectDelayed
        case ZMQ_EVENT_CONNECT_RETRIED: .connectRetried(afterMilliseconds: Int(value))
        case ZMQ_EVENT_LISTENING: .listening
        case ZMQ_EVENT_BIND_FAILED: .bindFailed(errno: Int32(bitPattern: value))
        case ZMQ_EVENT_ACCEPTED: .accepted
        case ZMQ_EVENT_ACCEPT_FAILED: .acceptFailed(errno: Int32(bitPattern: value))
        case ZMQ_EVENT_CLOSED: .closed
        case ZMQ_EVENT_CLOSE_FAILED: .closeFailed(errno: Int32(bitPattern: value))
        case ZMQ_EVENT_DISCONNECTED: .disconnected
        case ZMQ_EVENT_MONITOR_STOPPED: .monitorStopped
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: .handshakeSucceeded
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: .handshakeFailed(.noDetail(errno: Int32(bitPattern: value)))
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: .handshakeFailed(.protocolError(code: value))
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: .handshakeFailed(.authentication(status: value))
        default: .unknown(event: UInt16(truncatingIfNeeded: event), value: value)
        }
    }
}

/// The receiving end of a socket monitor: a PAIR socket on an inproc endpoint.
public final class Monitor {
    public let socket: Socket

    init(socket: Socket) { self.socket = socket }

    /// The next event, or nil if none is waiting.
    public func next(wait: Bool = false) -> MonitorRecord? {
        guard let m = try? socket.receive(wait: wait, maxFrames: 4) else { return nil }
        return MonitorRecord(frames: m.frames)
    }

    public func close() { socket.close() }
}
