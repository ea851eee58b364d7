import CZeroMQ

/// The ZeroMQ Authentication Protocol (RFC 27) handler: a REP socket on `inproc://zeromq.zap.01`
/// that libzmq asks about every incoming CURVE handshake. It must be bound before any listening
/// socket: libzmq without a handler accepts any client key.
final class ZAPHandler {
    static let endpoint = "inproc://zeromq.zap.01"

    /// A handshake that the handler refused.
    struct Rejection: Sendable, Equatable {
        var address: String
        var mechanism: String
        /// Fingerprint of the client's public key, when it offered one.
        var keyFingerprint: String?
    }

    let socket: Socket
    private let allowed: [[UInt8]: String]

    init(context: Context, allowed: [[UInt8]: String]) throws {
        socket = try Socket(context, .rep)
        self.allowed = allowed
        try socket.bind(Self.endpoint)
    }

    /// Answers every waiting request; returns the rejections so the loop can report them.
    func serve() -> [Rejection] {
        var rejections: [Rejection] = []
        while let request = try? socket.receive(maxFrames: 16) {
            let (reply, rejection) = answer(request.frames)
            if let rejection { rejections.append(rejection) }
            socket.send(reply, wait: true)
        }
        return rejections
    }

    /// Request frames: version, request id, domain, address, routing id, mechanism, credentials…
    /// Reply frames: version, request id, status code, status text, user id, metadata.
    func answer(_ f: [[UInt8]]) -> (reply: [[UInt8]], rejection: Rejection?) {
        let version = Array("1.0".utf8)
        let requestID = f.count > 1 ? f[1] : []
        func reply(_ code: String, _ text: String, user: String) -> [[UInt8]] {
            [version, requestID, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard f.count >= 6, f[0] == version else {
            return (reply("500", "malformed ZAP request", user: ""), nil)
        }
        let address = String(decoding: f[3], as: UTF8.self)
        let mechanism = String(decoding: f[5], as: UTF8.self)
        if mechanism == "CURVE", f.count >= 7, let user = allowed[f[6]] {
            return (reply("200", "OK", user: user), nil)
        }
        let fingerprint = (mechanism == "CURVE" && f.count >= 7 && f[6].count == 32) ? KeyFingerprint.of(f[6]) : nil
        return (
            reply("400", "client key is not one of this mesh's", user: ""),
            Rejection(address: address, mechanism: mechanism, keyFingerprint: fingerprint)
        )
    }
}
