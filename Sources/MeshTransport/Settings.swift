import CZeroMQ

/// Socket limits and timings. The defaults suit a lab network; tests shorten them.
public struct TransportSettings: Sendable {
    /// Largest frame accepted (`ZMQ_MAXMSGSIZE`). A peer that sends more is disconnected by libzmq.
    public var maxMessageSize: Int64 = 16 << 20
    /// Frames kept per message; more are discarded and the message is marked truncated.
    public var maxFrames: Int = 16
    /// High-water mark of each peer DEALER: a slow or dead peer gets at most this many queued messages.
    public var peerHighWaterMark: Int32 = 1000
    /// High-water mark of the listening ROUTER.
    public var listenerHighWaterMark: Int32 = 10_000
    /// ZMTP heartbeats: a PING every interval, a connection with no traffic for `heartbeatTimeout` is
    /// closed, so a dead host's connection is noticed even if its kernel never sent a FIN.
    public var heartbeatInterval: Duration = .seconds(1)
    public var heartbeatTimeout: Duration = .seconds(3)
    /// The longest a ZMTP/CURVE handshake may take before libzmq drops the connection.
    public var handshakeTimeout: Duration = .seconds(5)
    /// TCP connect timeout.
    public var connectTimeout: Duration = .seconds(3)
    public var reconnectInterval: Duration = .milliseconds(100)
    public var reconnectIntervalMax: Duration = .seconds(2)
    /// Messages handled from one socket before the loop looks at the others (fairness).
    public var receiveBatch: Int = 256
    /// The local address outgoing peer connections come from (nil: the kernel's choice). A host
    /// with several addresses, or several agents on one host each with its own loopback address
    /// (the chaos harness), needs it so that a peer sees, and a firewall can filter, who dials.
    public var sourceAddress: String?
    /// Name of the I/O thread (at most 15 bytes are kept by the kernel).
    public var threadName: String = "mesh-io"
    /// A number libzmq puts in the names of its own threads (`ZMQbg/N/IO/0`), so a test can see
    /// that they are gone after shutdown.
    public var zmqThreadNamePrefix: Int32?

    public init() {}
}

extension Duration {
    /// Whole milliseconds, rounded up so that a short timeout never becomes a busy loop.
    var millisecondsRoundedUp: Int64 {
        let (s, atto) = components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        let rest = atto % 1_000_000_000_000_000
        return rest > 0 ? ms + 1 : ms
    }

    var milliseconds32: Int32 { Int32(clamping: millisecondsRoundedUp) }
}

/// How an outgoing socket authenticates.
public enum ClientSecurity: Sendable {
    /// CURVE with the server's public key and our own key pair.
    case curve(serverPublicKey: [UInt8], client: CurveKeyPair)
    /// No encryption or authentication: only for benchmarks and tests.
    case plaintext
}

/// How the transport's listening socket authenticates, and which client keys its ZAP handler lets in.
public enum TransportSecurity: Sendable {
    /// CURVE with the mesh's keys: the listener uses the server key; the ZAP handler admits the
    /// mesh's `peer` and `client` keys and nothing else; outgoing peer connections use the `peer` key.
    case curve(MeshKeys)
    /// No encryption or authentication: only for benchmarks and tests.
    case plaintext

    /// Public key → the user id the ZAP handler gives connections made with it.
    var allowedClients: [[UInt8]: String] {
        switch self {
        case .curve(let k): [k.peer.publicKey: KeyRole.peer.rawValue, k.client.publicKey: KeyRole.client.rawValue]
        case .plaintext: [:]
        }
    }

    /// The security for connecting to another agent in this role.
    public func client(as role: KeyRole) -> ClientSecurity {
        switch self {
        case .curve(let k): .curve(serverPublicKey: k.server.publicKey, client: k.pair(for: role))
        case .plaintext: .plaintext
        }
    }
}

extension Socket {
    /// The options every socket of the mesh gets, then the per-kind ones from DESIGN.md §3.
    func applyCommon(_ s: TransportSettings) throws {
        try setOption(ZMQ_MAXMSGSIZE, int64: s.maxMessageSize)
        try setOption(ZMQ_HEARTBEAT_IVL, s.heartbeatInterval.milliseconds32)
        try setOption(ZMQ_HEARTBEAT_TIMEOUT, s.heartbeatTimeout.milliseconds32)
        try setOption(ZMQ_HEARTBEAT_TTL, s.heartbeatTimeout.milliseconds32)
        try setOption(ZMQ_HANDSHAKE_IVL, s.handshakeTimeout.milliseconds32)
    }

    func configureListener(_ s: TransportSettings, security: TransportSecurity) throws {
        try applyCommon(s)
        try setOption(ZMQ_ROUTER_MANDATORY, 1)
        try setOption(ZMQ_SNDHWM, s.listenerHighWaterMark)
        try setOption(ZMQ_RCVHWM, s.listenerHighWaterMark)
        if case .curve(let keys) = security {
            try setOption(ZMQ_CURVE_SERVER, 1)
            try setOption(ZMQ_CURVE_SECRETKEY, bytes: keys.server.secretKey)
            try setOption(ZMQ_CURVE_PUBLICKEY, bytes: keys.server.publicKey)
            // A domain makes libzmq consult the ZAP handler for every mechanism, NULL included.
            try setOption(ZMQ_ZAP_DOMAIN, string: "mesh")
        }
    }

    func configureDealer(_ s: TransportSettings, security: ClientSecurity) throws {
        try applyCommon(s)
        try setOption(ZMQ_IMMEDIATE, 1)
        try setOption(ZMQ_SNDHWM, s.peerHighWaterMark)
        try setOption(ZMQ_RCVHWM, s.peerHighWaterMark)
        try setOption(ZMQ_CONNECT_TIMEOUT, s.connectTimeout.milliseconds32)
        try setOption(ZMQ_RECONNECT_IVL, s.reconnectInterval.milliseconds32)
        try setOption(ZMQ_RECONNECT_IVL_MAX, s.reconnectIntervalMax.milliseconds32)
        if case .curve(let serverKey, let client) = security {
            try setOption(ZMQ_CURVE_SERVERKEY, bytes: serverKey)
            try setOption(ZMQ_CURVE_PUBLICKEY, bytes: client.publicKey)
            try setOption(ZMQ_CURVE_SECRETKEY, bytes: client.secretKey)
        }
    }
}
