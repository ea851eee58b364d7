import CSodium
import Foundation

/// SHA-256 (libsodium), streaming.
public struct SHA256Hasher {
    private var state = crypto_hash_sha256_state()

    public init() { crypto_hash_sha256_init(&state) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The hash of a string's UTF-8.
    public static func text(_ s: String) -> String {
        var h = SHA256Hasher()
        var s = s
        s.withUTF8 { h.update(UnsafeRawBufferPointer($0)) }
        return h.finish()
    }

    public mutating func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        crypto_hash_sha256_final(&state, &out)
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8](repeating: 0, count: 64)
        for (i, b) in out.enumerated() {
            hex[2 * i] = digits[Int(b >> 4)]
            hex[2 * i + 1] = digits[Int(b & 15)]
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// The hash of a file's contents (not following a symlink), and its size.
    public static func file(_ path: String) throws(ArchiveError) -> (hash: String, size: UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .io(path, errno) }
        defer { close(fd) }
        var h = SHA256Hasher()
        var size: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw .io(path, errno) }
            if n == 0 { break }
            buffer.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            size += UInt64(n)
        }
        return (h.finish(), size)
    }

    public static func isHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }
}

public enum ArchiveError: Error, CustomStringConvertible, Equatable {
    case io(String, Int32)
    case malformed(String)
    case unsafePath(String)
    case tooLarge(limit: UInt64)

    public var description: String {
        switch self {
        case .io(let path, let e): "\(path): \(String(cString: strerror(e)))"
        case .malformed(let why): "not a valid mesh archive: \(why)"
        case .unsafePath(let p): "refused the path '\(p)': it is absolute, has '..' or goes through a link"
        case .tooLarge(let limit): "over the limit of \(ByteCount(limit))"
        }
    }
}

/// Bytes for people: 1.5 MiB.
public struct ByteCount: CustomStringConvertible {
    public var bytes: UInt64
    public init(_ bytes: UInt64) { self.bytes = bytes }
    public var description: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes), i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[i])
    }
}

/// The mesh's own archive format for code bundles and results: a magic line, then entries of
/// (kind, [mode,] path, size, bytes), then an end marker. Kinds: `f` a file, `x` an executable,
/// `p` a file with its permission bits (results). Only regular files and directories; no links,
/// owners or absolute paths, so unpacking can never write outside its target.
public enum Archive {
    static let magic = Array("MESHAR1\n".utf8)
    public static let maxEntries = 1_000_000

    public struct Entry: Sendable, Equatable {
        /// Relative, '/'-separated.
        public var path: String
        /// Where the bytes are read from when packing.
        public var source: String
        public init(path: String, source: String) {
            self.path = path
            self.source = source
        }
    }

    /// Packs regular files (symlinks and other kinds are skipped and named in `skipped`). Stops
    /// with `.tooLarge` once the file contents pass `limit`. Returns the archive's hash and size.
    /// `keepModes`: each file's permission bits go with it (results: a copy never has more
    /// permission than its source had); otherwise a file is executable or not (code bundles).
    public static func pack(_ entries: [Entry], to output: String, limit: UInt64 = .max, keepModes: Bool = false) throws(ArchiveError)
        -> (hash: String, size: UInt64, skipped: [String])
    {
        let out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw .io(output, errno) }
        defer { close(out) }
        var w = Writer(fd: out, path: output)
        try w.write(magic)
        var skipped: [String] = []
        var total: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        for e in entries {
            guard safe(e.path) else { throw .unsafePath(e.path) }
            let fd = open(e.source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            if fd < 0 {
                if errno == ELOOP || errno == ENOENT { skipped.append(e.path); continue }
                throw .io(e.source, errno)
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .io(e.source, errno) }
            guard st.st_mode & S_IFMT == S_IFREG else { skipped.append(e.path); continue }
            let size = UInt64(st.st_size)
            total += size
            guard total <= limit else { throw .tooLarge(limit: limit) }
            if keepModes {
                try w.header(kind: UInt8(ascii: "p"), mode: UInt16(st.st_mode & 0o777), path: e.path, size: size)
            } else {
                let executable = st.st_mode & 0o111 != 0
                try w.header(kind: executable ? UInt8(ascii: "x") : UInt8(ascii: "f"), path: e.path, size: size)
            }
            var left = size
            while left > 0 {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, min($0.count, Int(left))) }
                if n < 0 { if errno == EINTR { continue }; throw .io(e.source, errno) }
                // The file shrank while we read it: pad, so the archive stays well-formed.
                if n == 0 {
                    try w.write([UInt8](repeating: 0, count: Int(left)))
                    break
                }
                try w.write(Array(buffer[0..<n]))
                left -= UInt64(n)
            }
        }
        try w.write([UInt8(ascii: "e")])
        return (w.hasher.finish(), w.written, skipped)
    }

    /// Is this a path an archive may hold? Relative, no empty, '.' or '..' component, no NUL.
    public static func safe(_ path: String) -> Bool {
        guard !path.isEmpty, path.utf8.count < 4096, !path.hasPrefix("/"), !path.utf8.contains(0) else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { $0 != "" && $0 != "." && $0 != ".." }
    }

    /// Unpacks into `directory` (which must exist). Entries under a prefix in `skip` are passed
    /// over; `only` (if given) unpacks just that one entry. Refuses unsafe paths, existing
    /// files, directories reached through a link, and more than `limit` bytes of contents.
    @discardableResult
    public static func unpack(_ archive: String, into directory: String, skip: [String] = [], only: String? = nil,
                              limit: UInt64 = .max) throws(ArchiveError) -> [String] {
        let fd = open(archive, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(archive, errno) }
        defer { close(fd) }
        let r = Reader(fd: fd, path: archive)
        guard try r.read(magic.count) == magic else { throw .malformed("wrong magic") }
        var written: [String] = []
        var total: UInt64 = 0
        var count = 0
        while true {
            let kind = try r.read(1)[0]
            if kind == UInt8(ascii: "e") { break }
            count += 1
            guard count <= maxEntries else { throw .malformed("more than \(maxEntries) entries") }
            guard kind == UInt8(ascii: "f") || kind == UInt8(ascii: "x") || kind == UInt8(ascii: "p") else { throw .malformed("unknown entry kind \(kind)") }
            let mode: mode_t = kind == UInt8(ascii: "p") ? mode_t(try r.u16() & 0o777) : kind == UInt8(ascii: "x") ? 0o755 : 0o644
            let pathLength = Int(try r.u32())
            guard pathLength > 0, pathLength < 4096 else { throw .malformed("path of \(pathLength) bytes") }
            guard let path = String(validating: try r.read(pathLength), as: UTF8.self) else { throw .malformed("path is not UTF-8") }
            let size = try r.u64()
            let wanted = only.map { $0 == path } ?? !skip.contains { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
            guard wanted else {
                try r.skip(size)
                continue
            }
            guard safe(path) else { throw .unsafePath(path) }
            // (Compared before adding: a hostile size near 2^64 would overflow the sum.)
            guard size <= limit - total else { throw .tooLarge(limit: limit) }
            total += size
            let target = directory + "/" + path
            try makeParents(of: path, in: directory)
            let out = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            guard out >= 0 else { throw errno == EEXIST || errno == ELOOP ? .unsafePath(path) : .io(target, errno) }
            defer { close(out) }
            var w = Writer(fd: out, path: target)
            var left = size
            while left > 0 {
                let chunk = try r.read(Int(min(left, 1 << 16)))
                try w.write(chunk)
                left -= UInt64(chunk.count)
            }
            written.append(path)
            if only != nil { break }
        }
        return written
    }

    /// Creates the directories above `path` inside `root`, refusing any that is a link.
    private static func makeParents(of path: String, in root: String) throws(ArchiveError) {
        var current = root
        for part in path.split(separator: "/").dropLast() {
            current += "/" + part
            var st = stat()
            if lstat(current, &st) == 0 {
                guard st.st_mode & S_IFMT == S_IFDIR else { throw .unsafePath(path) }
            } else if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw .io(current, errno)
            }
        }
    }

    /// Reads one entry's bytes (up to `limit`) without unpacking anything.
    public static func read(_ archive: String, entry: String, offset: UInt64 = 0, limit: Int = .max) throws(ArchiveError) -> (data: [UInt8], size: UInt64)? {
        let fd = open(archive, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(archive, errno) }
        defer { close(fd) }
        let r = Reader(fd: fd, path: archive)
        guard try r.read(magic.count) == magic else { throw .malformed("wrong magic") }
        while true {
            let kind = try r.read(1)[0]
            if kind == UInt8(ascii: "e") { return nil }
            if kind == UInt8(ascii: "p") { _ = try r.u16() }
            let pathLength = Int(try r.u32())
            guard pathLength > 0, pathLength < 4096 else { throw .malformed("path of \(pathLength) bytes") }
            let path = String(decoding: try r.read(pathLength), as: UTF8.self)
            let size = try r.u64()
            if path == entry {
                let start = min(offset, size)
                try r.skip(start)
                return (try r.read(Int(min(UInt64(limit), size - start))), size)
            }
            try r.skip(size)
        }
    }

    struct Writer {
        let fd: Int32
        let path: String
        var hasher = SHA256Hasher()
        var written: UInt64 = 0

        mutating func write(_ bytes: [UInt8]) throws(ArchiveError) {
            let failure: Int32 = bytes.withUnsafeBytes { b in Self.writeAll(fd, b) }
            guard failure == 0 else { throw .io(path, failure) }
            hasher.update(bytes)
            written += UInt64(bytes.count)
        }

        mutating func write(_ bytes: UnsafeRawBufferPointer) throws(ArchiveError) {
            let failure = Self.writeAll(fd, bytes)
            guard failure == 0 else { throw .io(path, failure) }
            hasher.update(bytes)
            written += UInt64(bytes.count)
        }

        /// 0, or the errno.
        static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 { if errno == EINTR { continue }; return errno }
                done += n
            }
            return 0
        }

        mutating func header(kind: UInt8, mode: UInt16? = nil, path: String, size: UInt64) throws(ArchiveError) {
            let p = Array(path.utf8)
            var h: [UInt8] = [kind]
            if let mode { withUnsafeBytes(of: mode.littleEndian) { h += $0 } }
            withUnsafeBytes(of: UInt32(p.count).littleEndian) { h += $0 }
            h += p
            withUnsafeBytes(of: size.littleEndian) { h += $0 }
            try write(h)
        }
    }

    struct Reader {
        let fd: Int32
        let path: String

        func read(_ count: Int) throws(ArchiveError) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
                if n < 0 { if errno == EINTR { continue }; throw .io(path, errno) }
                if n == 0 { throw .malformed("ends early") }
                done += n
            }
            return out
        }

        func skip(_ count: UInt64) throws(ArchiveError) {
            guard count <= UInt64(Int64.max) else { throw .malformed("an entry of \(count) bytes") }
            guard lseek(fd, off_t(count), SEEK_CUR) >= 0 else { throw .io(path, errno) }
        }

        func u16() throws(ArchiveError) -> UInt16 {
            try read(2).withUnsafeBytes { UInt16(littleEndian: $0.loadUnaligned(as: UInt16.self)) }
        }

        func u32() throws(ArchiveError) -> UInt32 {
            try read(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        }

        func u64() throws(ArchiveError) -> UInt64 {
            try read(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
    }
}
