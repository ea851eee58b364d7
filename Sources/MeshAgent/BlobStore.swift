import Foundation

/// Content-addressed files under `DIR/blobs/<sha256>`: code bundles and results. A blob arrives
/// in order into `DIR/blobs/incoming/<sha256>` and becomes visible (renamed) only once its
/// hash checks out, so a reader never sees part of one.
final class BlobStore {
    let directory: String
    private var incoming: [String: (fd: Int32, received: UInt64, size: UInt64, hasher: SHA256Hasher)] = [:]

    init(directory: String) throws(ArchiveError) {
        self.directory = directory
        for d in [directory, directory + "/incoming"] where mkdir(d, 0o700) != 0 && errno != EEXIST {
            throw .io(d, errno)
        }
        // Partial blobs from before a restart are of no use.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory + "/incoming")) ?? [] {
            unlink(directory + "/incoming/" + name)
        }
    }

    func path(_ hash: String) -> String { directory + "/" + hash }

    func size(_ hash: String) -> UInt64? {
        guard SHA256Hasher.isHash(hash) else { return nil }
        var st = stat()
        return stat(path(hash), &st) == 0 ? UInt64(st.st_size) : nil
    }

    func has(_ hash: String) -> Bool { size(hash) != nil }

    /// Files a complete file (built at `temporary`) under its hash.
    func adopt(_ temporary: String, hash: String) throws(ArchiveError) {
        guard rename(temporary, path(hash)) == 0 else { throw .io(path(hash), errno) }
    }

    /// The next chunk of an incoming blob. Returns how much has arrived; throws if the chunk is
    /// out of order, over the size, or the finished blob does not match its hash.
    func receive(hash: String, size: UInt64, offset: UInt64, data: [UInt8], limit: UInt64) throws(BlobError) -> (received: UInt64, complete: Bool) {
        guard SHA256Hasher.isHash(hash) else { throw .bad("'\(hash)' is not a SHA-256") }
        if has(hash) { return (size, true) }
        guard size <= limit else { throw .bad("the blob is \(ByteCount(size)), over this agent's limit of \(ByteCount(limit))") }
        if offset == 0, let old = incoming.removeValue(forKey: hash) { close(old.fd) }
        if incoming[hash] == nil {
            guard offset == 0 else { throw .bad("chunk at \(offset) of a blob not being received") }
            let p = directory + "/incoming/" + hash
            let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .bad("cannot write \(p): \(String(cString: strerror(errno)))") }
            incoming[hash] = (fd, 0, size, SHA256Hasher())
        }
        var e = incoming[hash]!
        guard offset == e.received, e.size == size, e.received + UInt64(data.count) <= size else {
            abandon(hash)
            throw .bad("chunk at \(offset) (\(data.count) bytes) does not follow \(e.received) of \(size)")
        }
        var done = 0
        while done < data.count {
            let n = data.withUnsafeBytes { write(e.fd, $0.baseAddress! + done, data.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let why = String(cString: strerror(errno))
                abandon(hash)
                throw .bad("cannot store the blob: \(why)")
            }
            done += n
        }
        e.hasher.update(data)
        e.received += UInt64(data.count)
        incoming[hash] = e
        guard e.received == size else { return (e.received, false) }
        incoming[hash] = nil
        close(e.fd)
        let got = e.hasher.finish()
        guard got == hash else {
            unlink(directory + "/incoming/" + hash)
            throw .bad("the blob's contents hash to \(got), not \(hash)")
        }
        guard rename(directory + "/incoming/" + hash, path(hash)) == 0 else { throw .bad("cannot store the blob: \(String(cString: strerror(errno)))") }
        return (size, true)
    }

    func abandon(_ hash: String) {
        if let e = incoming.removeValue(forKey: hash) {
            close(e.fd)
            unlink(directory + "/incoming/" + hash)
        }
    }

    /// Up to `length` bytes from `offset`.
    func read(_ hash: String, offset: UInt64, length: Int) -> [UInt8]? {
        guard SHA256Hasher.isHash(hash) else { return nil }
        let fd = open(path(hash), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // (An offset past Int64 would trap in off_t: such a read is past the end of any file.)
        guard offset <= UInt64(Int64.max) else { return [] }
        var out = [UInt8](repeating: 0, count: length)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
        guard n >= 0 else { return nil }
        out.removeLast(length - n)
        return out
    }
}

enum BlobError: Error, CustomStringConvertible {
    case bad(String)
    var description: String {
        switch self { case .bad(let s): s }
    }
}
