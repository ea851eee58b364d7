import Foundation
import MeshCore
import MeshWire

extension MeshClient {
    /// Jobs as the coordinator has them: these, or all of them (by id; fetched a page at a time,
    /// so no answer grows with the history).
    public func jobs(_ ids: [JobID] = [], local: Bool = false, timeout: Duration = .seconds(10)) throws(ClientError) -> [Job] {
        guard ids.isEmpty else {
            var request = WireStatusRequest()
            request.local = local
            request.jobs = true
            request.jobIds = ids
            return try jobs(request, timeout: timeout).jobs
        }
        var out: [Job] = []
        var query = ClusterState.JobQuery()
        while true {
            let page = try jobs(query, local: local, timeout: timeout)
            out += page.jobs
            guard page.more else { break }
            query.before = page.nextBefore
        }
        return out.reversed()
    }

    /// One page of jobs, newest first, filtered by the agent; `more` if older ones may match
    /// (`nextBefore` continues).
    public func jobs(_ query: ClusterState.JobQuery, local: Bool = false, timeout: Duration = .seconds(10)) throws(ClientError)
        -> (jobs: [Job], more: Bool, nextBefore: JobID)
    {
        var request = WireStatusRequest()
        request.local = local
        request.jobs = true
        request.limit = UInt32(clamping: query.limit)
        request.before = query.before
        request.states = query.states.map(\.rawValue).sorted()
        request.name = query.name
        request.node = query.node?.rawValue ?? 0
        request.sinceMs = query.sinceMillis
        return try jobs(request, timeout: timeout)
    }

    private func jobs(_ request: WireStatusRequest, timeout: Duration) throws(ClientError) -> (jobs: [Job], more: Bool, nextBefore: JobID) {
        let reply = try call(.statusRequest(request), timeout: timeout)
        guard case .statusReply(let status) = reply.body else { throw .unexpectedReply(address) }
        var out: [Job] = []
        for w in status.jobs {
            do { out.append(try Wire.job(w)) } catch { throw .badReply(address, error) }
        }
        return (out, status.moreJobs, status.nextBefore)
    }

    /// Uploads a file as a content-addressed blob; the agent stores it on `replicas` live nodes
    /// before answering. Returns the nodes that hold it.
    public func putBlob(_ path: String, hash: String, size: UInt64, replicas: Int, timeout: Duration = .seconds(120)) throws(ClientError) -> [NodeID] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .transport(address, "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let chunkSize = 1 << 20
        var offset: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, chunkSize, off_t(offset)) }
            guard n >= 0 else { throw .transport(address, "cannot read \(path): \(String(cString: strerror(errno)))") }
            var p = WireBlobPut()
            p.hash = hash
            p.size = size
            p.offset = offset
            p.data = Data(buffer[0..<n])
            p.replicas = UInt32(replicas)
            let reply = try call(.blobPut(p), timeout: timeout)
            guard case .blobStored(let s) = reply.body else { throw .unexpectedReply(address) }
            if s.complete { return s.holders.map(NodeID.init) }
            guard n > 0, s.received == offset + UInt64(n) else { throw .unexpectedReply(address) }
            offset = s.received
        }
    }

    /// Downloads a blob (the agent fetches it from `holders` if it lacks it) into `file`, and
    /// checks its hash.
    public func getBlob(_ hash: String, holders: [NodeID], to file: String, timeout: Duration = .seconds(60)) throws(ClientError) {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .transport(address, "cannot write \(file): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        var hasher = SHA256Hasher()
        var offset: UInt64 = 0
        while true {
            var g = WireBlobGet()
            g.hash = hash
            g.offset = offset
            g.length = 1 << 20
            g.holders = holders.map(\.rawValue)
            let reply = try call(.blobGet(g), timeout: timeout)
            guard case .blobChunk(let c) = reply.body, c.offset == offset else { throw .unexpectedReply(address) }
            let bytes = Array(c.data)
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written == bytes.count else { throw .transport(address, "cannot write \(file): \(String(cString: strerror(errno)))") }
            hasher.update(bytes)
            offset += UInt64(bytes.count)
            if offset >= c.size { break }
            guard !bytes.isEmpty else { throw .unexpectedReply(address) }
        }
        let got = hasher.finish()
        guard got == hash else { throw .transport(address, "the downloaded blob hashes to \(got), not \(hash)") }
    }

    /// Part of a job's log from `offset`: which attempt, the bytes, and whether that is the end.
    public func log(job: JobID, attempt: Int = 0, offset: UInt64, maxBytes: Int = 1 << 20, timeout: Duration = .seconds(10))
        throws(ClientError) -> (attempt: Int, data: [UInt8], complete: Bool)
    {
        var r = WireLogRequest()
        r.job = job
        r.attempt = UInt32(attempt)
        r.offset = offset
        r.maxBytes = UInt32(maxBytes)
        let reply = try call(.logRequest(r), timeout: timeout)
        guard case .logChunk(let c) = reply.body else { throw .unexpectedReply(address) }
        return (Int(c.attempt), Array(c.data), c.complete)
    }
}

extension MeshClient {
    /// Sweeps as the coordinator has them: summaries of all (with how many cells are in each
    /// state), or these in full.
    public func sweeps(_ ids: [SweepID] = [], timeout: Duration = .seconds(10)) throws(ClientError) -> [(sweep: Sweep, states: [String: Int])] {
        var request = WireStatusRequest()
        request.sweeps = true
        request.sweepIds = ids
        let reply = try call(.statusRequest(request), timeout: timeout)
        guard case .statusReply(let status) = reply.body else { throw .unexpectedReply(address) }
        var out: [(Sweep, [String: Int])] = []
        for w in status.sweeps {
            do { out.append((try Wire.sweep(w), w.states.mapValues(Int.init))) } catch { throw .badReply(address, error) }
        }
        return out
    }

    /// Jobs by id, fetched in batches (a sweep can have thousands).
    public func jobs(batched ids: [JobID], batch: Int = 1000) throws(ClientError) -> [Job] {
        var out: [Job] = []
        var start = 0
        while start < ids.count {
            out += try jobs(Array(ids[start..<min(ids.count, start + batch)]))
            start += batch
        }
        return out
    }
}
