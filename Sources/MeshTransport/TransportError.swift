import CZeroMQ

/// An error from libzmq or from the transport's own checks, with the operation that failed.
///
/// `errno` carries libzmq's error number when there is one, so callers can tell, say,
/// `EADDRINUSE` from `EACCES` and phrase advice for the user.
public struct TransportError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var errno: Int32?
    public var detail: String

    public init(_ operation: String, errno: Int32? = nil, detail: String) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    /// Captures `zmq_errno()` right after a failed libzmq call.
    static func zmq(_ operation: String) -> TransportError {
        let code = zmq_errno()
        return TransportError(operation, errno: code, detail: String(cString: zmq_strerror(code)))
    }

    public var description: String { "\(operation): \(detail)" }

    public var isAddressInUse: Bool { errno == EADDRINUSE }
    public var isPermissionDenied: Bool { errno == EACCES || errno == EPERM }
    public var isContextTerminated: Bool { errno == ETERM_ZMQ }
}

/// `ETERM` is defined by libzmq as an offset from its own base number; Swift does not import the
/// macro expression, so it is spelled out here.
let ZMQ_HAUSNUMERO_VALUE: Int32 = 156_384_712
let ETERM_ZMQ: Int32 = ZMQ_HAUSNUMERO_VALUE + 53
let EFSM_ZMQ: Int32 = ZMQ_HAUSNUMERO_VALUE + 51
