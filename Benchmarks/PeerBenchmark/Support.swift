import BenchSupport
import Foundation
import MeshAgent
import MeshCore

/// Prints a line at once (also when stdout is a pipe, as through `tee`).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a command to its end; its output (stdout and stderr together) and exit status.
@discardableResult
func run(_ path: String, _ args: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(600)) throws -> (status: Int32, output: String) {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("peer-\(getpid())-\(UUID().uuidString).out").path
    defer { unlink(out) }
    let p = try ChildProcess.spawn(path, args, environment: environment, stdout: out, stderr: out)
    guard let t = p.wait(timeout: timeout) else {
        p.signalGroup(SIGKILL)
        _ = p.wait(timeout: .seconds(5))
        throw BenchError("\(path) \(args.joined(separator: " ")) did not end within \(timeout)")
    }
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    switch t {
    case .exited(let c): return (c, text)
    case .signalled(let s): return (128 + s, text)
    }
}

/// Waits for a file holding a `date +%s%N` reading; nil after `timeout`.
func readMark(_ path: String, timeout: Duration = .seconds(60)) -> Int64? {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let s = try? String(contentsOfFile: path, encoding: .utf8), s.hasSuffix("\n"),
           let v = Int64(s.trimmingCharacters(in: .whitespacesAndNewlines)) { return v }
        if ContinuousClock.now >= deadline { return nil }
        usleep(2000)
    }
}

/// Polls `condition` every `interval` until it holds; false after `timeout`.
func poll(every interval: Duration = .milliseconds(50), timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: interval.seconds)
    }
    return false
}

/// A minimal HTTP/1.1 POST over loopback (etcd's JSON gateway): status and body, nil if the
/// connection failed or no answer came within `timeout`.
func httpPost(port: Int, path: String, body: String, timeout: Duration) -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let ms = Int(timeout.components.seconds) * 1000 + Int(timeout.components.attoseconds / 1_000_000_000_000_000)
    var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    let sent = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    guard sent == request.utf8.count else { return nil }
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        data += buffer[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let head = text.range(of: "\r\n\r\n"), let statusLine = text.split(separator: "\r\n").first else { return nil }
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
    return (status, String(text[head.upperBound...]))
}

/// CPU time of a process (user + system) in clock ticks, and its resident set in KiB.
func cpuTicksAndRSS(_ pid: pid_t) -> (ticks: Int, rssKB: Int)? {
    guard FileManager.default.fileExists(atPath: "/proc/\(pid)") else { return nil }
    return (BenchSupport.cpuTicks(pid), BenchSupport.rssKB(pid))
}
