/// Turns one outgoing connection's monitor events into what a caller needs to know: is it usable,
/// did the handshake fail (and why), and, if nothing happened, what to tell the user.
///
/// libzmq retries a failed handshake forever; this is where a retry loop becomes a clear error.
public struct ConnectionTracker: Sendable, Equatable {
    /// The handshake succeeded and no disconnect came after it.
    public private(set) var isEstablished = false
    /// TCP connected since the last drop or retry, and no handshake result yet.
    private var connectedAwaitingHandshake = false
    private var everConnected = false
    private var lastConnectRetried = false

    public init() {}

    /// What an event changed.
    public enum Change: Sendable, Equatable {
        case none
        case established
        /// The handshake failed: the keys are wrong, or the other side is not a mesh agent.
        case handshakeFailed(HandshakeFailure)
        /// An established connection dropped (the peer's process died or its host went silent).
        case lost
    }

    public mutating func observe(_ event: MonitorEvent) -> Change {
        switch event {
        case .connected:
            connectedAwaitingHandshake = true
            everConnected = true
            lastConnectRetried = false
            return .none
        case .connectRetried:
            connectedAwaitingHandshake = false
            lastConnectRetried = true
            return .none
        case .handshakeSucceeded:
            connectedAwaitingHandshake = false
            isEstablished = true
            return .established
        case .handshakeFailed(let f):
            connectedAwaitingHandshake = false
            isEstablished = false
            return .handshakeFailed(f)
        case .disconnected:
            if isEstablished {
                isEstablished = false
                return .lost
            }
            if connectedAwaitingHandshake {
                // The server hung up in the middle of the handshake: with CURVE that is what a
                // server does when it cannot decrypt our HELLO, i.e. we hold the wrong server key.
                connectedAwaitingHandshake = false
                return .handshakeFailed(.noDetail(errno: 0))
            }
            return .none
        default:
            return .none
        }
    }

    /// What the events so far say about a connection that gave no answer.
    public var diagnosis: ConnectionDiagnosis {
        if isEstablished { return .connectedButSilent }
        if everConnected { return .handshakeIncomplete }
        return lastConnectRetried ? .refused : .noConnection
    }
}
