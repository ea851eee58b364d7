/// Where an agent listens or is dialled: `HOST:PORT` over TCP, or a local `ipc://` socket.
public enum AgentAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case ipc(path: String)

    public static let defaultPort = 7770

    /// Parses `HOST:PORT`, `HOST` (default port), `:PORT` or `PORT` (any interface, for listening),
    /// `tcp://HOST:PORT` and `ipc://PATH`. Port 0 means "any free port" when listening.
    public init(parsing text: String, defaultHost: String = "0.0.0.0") throws(AddressError) {
        let t = text.trimmingCharacters(in: [" ", "\t", "\n"])
        if t.isEmpty { throw .invalid(text, "empty address") }
        if t.hasPrefix("ipc://") {
            let path = String(t.dropFirst("ipc://".count))
            guard !path.isEmpty else { throw .invalid(text, "no path after ipc://") }
            self = .ipc(path: path)
            return
        }
        var rest = Substring(t)
        if rest.hasPrefix("tcp://") { rest = rest.dropFirst("tcp://".count) }
        if rest.hasPrefix("[") { throw .invalid(text, "IPv6 addresses are not supported yet; use an IPv4 address or a host name") }
        let host: Substring
        let portText: Substring?
        if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else if rest.allSatisfy(\.isNumber) {
            host = ""
            portText = rest
        } else {
            host = rest
            portText = nil
        }
        if host.contains(":") { throw .invalid(text, "IPv6 addresses are not supported yet; use an IPv4 address or a host name") }
        var port = Self.defaultPort
        if let portText {
            guard let p = Int(portText), (0...65535).contains(p) else {
                throw .invalid(text, "the port must be a number from 0 to 65535")
            }
            port = p
        }
        let h = host.isEmpty || host == "*" ? defaultHost : String(host)
        guard h.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
            throw .invalid(text, "'\(h)' is not a host name or IPv4 address")
        }
        self = .tcp(host: h, port: port)
    }

    /// The endpoint for libzmq; port 0 becomes `*`, which libzmq binds to a free port.
    public var endpoint: String {
        switch self {
        case .tcp(let host, let port): "tcp://\(host):\(port == 0 ? "*" : String(port))"
        case .ipc(let path): "ipc://\(path)"
        }
    }

    /// As a user writes it: `HOST:PORT`, or the ipc path.
    public var description: String {
        switch self {
        case .tcp(let host, let port): "\(host):\(port)"
        case .ipc(let path): "ipc://\(path)"
        }
    }

    /// Parses what libzmq reports as a bound endpoint (`tcp://127.0.0.1:41234`).
    public init?(endpoint: String) {
        guard let a = try? AgentAddress(parsing: endpoint) else { return nil }
        self = a
    }
}

public enum AddressError: UserFacingError, Equatable {
    case invalid(String, String)

    public var exitCode: Int32 { ExitStatus.usage }

    public var description: String {
        switch self {
        case .invalid(let text, let why): "invalid address '\(text)': \(why) (expected HOST:PORT, e.g. 127.0.0.1:\(AgentAddress.defaultPort))"
        }
    }
}
