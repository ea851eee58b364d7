import MeshCore

/// One cell of an expanded plan: a combination of the axes in one stage.
public struct ExpandedJob: Sendable, Equatable {
    public var stage: String
    public var combination: Int
    /// The axis values of the combination, in axis order.
    public var labels: [String]
    /// Every value the job was made with, resolved, in the order the plan defines them.
    public var parameters: [Parameter]
    public var command: [String]
    public var resources: ResourceOptions
    /// Cells (indices into the expansion, always earlier) that must succeed first.
    public var dependsOn: [Int]

    /// The environment the parameters give the job: MESH_PARAM_<NAME> (upper case, other
    /// characters as `_`) and MESH_STAGE.
    public var environment: [String: String] {
        var env: [String: String] = ["MESH_STAGE": stage]
        for p in parameters { env[ExpandedJob.environmentName(p.name)] = p.value }
        return env
    }

    public static func environmentName(_ name: String) -> String {
        "MESH_PARAM_" + String(name.uppercased().unicodeScalars.map { s in
            (("A"..."Z").contains(s) || ("0"..."9").contains(s)) ? Character(s) : "_"
        })
    }

    /// What its identity is the hash of: the resolved command, parameters, resources, code bundle
    /// and the identities of its dependencies. Unambiguous (every field is length-prefixed).
    public func identityBasis(bundle: String, dependencies: [String]) -> String {
        var out = "mesh-job-identity-1"
        func field(_ tag: String, _ s: String) { out += "|\(tag)\(s.utf8.count):\(s)" }
        for c in command { field("c", c) }
        for p in parameters.sorted(by: { $0.name < $1.name }) {
            field("p", p.name)
            field("v", p.value)
        }
        field("class", resources.nodeClass ?? "")
        field("gpus", "\(resources.gpus ?? 0)")
        field("slots", "\(resources.slots ?? 1)")
        field("timeout", "\(resources.timeoutSeconds ?? 0)")
        field("retries", "\(resources.retries ?? 0)")
        for r in resources.results ?? [] { field("r", r) }
        field("bundle", bundle)
        for d in dependencies.sorted() { field("d", d) }
        return out
    }
}

extension Plan {
    /// Every cell, combination by combination and, within one, stage by stage (so dependencies
    /// always come earlier). Throws before expanding anything if there would be more than `limit`.
    public func expand(limit: Int) throws(PlanError) -> [ExpandedJob] {
        let count = cellCount
        guard count <= limit else {
            let sizes = axes.map { "\($0.name) \($0.choices.count)" }.joined(separator: " × ")
            throw PlanError(line: nil, "the plan makes \(count == .max ? "more than \(Int.max)" : "\(count)") jobs (\(sizes.isEmpty ? "1" : sizes) combinations × \(stages.count) stage\(stages.count == 1 ? "" : "s")), more than the limit of \(limit)")
        }
        var out: [ExpandedJob] = []
        out.reserveCapacity(count)
        let combos = combinations
        var choice = [Int](repeating: 0, count: axes.count)
        for combination in 0..<combos {
            // Mixed radix, first axis slowest.
            var rest = combination
            for a in axes.indices.reversed() {
                choice[a] = rest % axes[a].choices.count
                rest /= axes[a].choices.count
            }
            var base: [Value] = fixed
            for a in axes.indices { base += axes[a].choices[choice[a]] }
            // In the order the plan defines them (a matrix has no lines: its order as given).
            base = base.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }.map(\.element)
            let labels = axes.indices.map { axes[$0].label(choice[$0]) }
            var stageValues: [[String: String]] = []
            var stageCells: [Int] = []
            for (s, stage) in stages.enumerated() {
                var values = base
                for v in stage.values {
                    if let i = values.firstIndex(where: { $0.name == v.name }) { values[i] = v } else { values.append(v) }
                }
                if !values.contains(where: { $0.name == "name" }) { values.append(Value("name", stage.name)) }
                var resolver = Resolver(values: values, stageIndex: s, stages: stages, earlier: stageValues)
                var parameters: [Parameter] = []
                for v in values { parameters.append(Parameter(v.name, try resolver.resolve(v.name, from: nil))) }
                let command = try render(resolver: &resolver)
                stageValues.append(resolver.resolved)
                let dependsOn = resolver.dependencies.sorted().map { stageCells[$0] }
                stageCells.append(out.count)
                out.append(ExpandedJob(stage: stage.name, combination: combination, labels: labels, parameters: parameters,
                                       command: command, resources: stage.resources.over(resources), dependsOn: dependsOn))
            }
        }
        return out
    }

    private func render(resolver: inout Resolver) throws(PlanError) -> [String] {
        switch command {
        case .script(let text, let line):
            return ["/bin/sh", "-c", try resolver.substitute(text, line: line, quote: true, stageRefs: false)]
        case .argv(let argv):
            let shells: Set<String> = ["sh", "bash", "dash", "zsh", "ksh"]
            let isShell = argv.first.map { shells.contains(String($0.split(separator: "/").last ?? "")) } ?? false
            var out: [String] = []
            for (i, arg) in argv.enumerated() {
                let script = isShell && i > 0 && argv[i - 1].hasPrefix("-") && !argv[i - 1].hasPrefix("--") && argv[i - 1].contains("c")
                out.append(try resolver.substitute(arg, line: 0, quote: script, stageRefs: false))
            }
            return out
        }
    }
}

/// Resolves one cell's values: `{name}` and `{axis.field}` refer to values of the same cell,
/// `$(stage.key)` to the value `key` had in an earlier stage of the same combination.
struct Resolver {
    let values: [String: Plan.Value]
    let stageIndex: Int
    let stages: [Plan.Stage]
    /// Resolved values of the earlier stages of this combination.
    let earlier: [[String: String]]
    private(set) var resolved: [String: String] = [:]
    /// Earlier stages this cell refers to.
    private(set) var dependencies: Set<Int> = []
    private var visiting: [String] = []

    init(values: [Plan.Value], stageIndex: Int, stages: [Plan.Stage], earlier: [[String: String]]) {
        var byName: [String: Plan.Value] = [:]
        for v in values { byName[v.name] = v }
        self.values = byName
        self.stageIndex = stageIndex
        self.stages = stages
        self.earlier = earlier
    }

    mutating func resolve(_ name: String, from line: Int?) throws(PlanError) -> String {
        if let done = resolved[name] { return done }
        guard let value = values[name] else {
            let known = values.keys.sorted()
            let fields = known.filter { $0.hasPrefix(name + ".") }
            if !fields.isEmpty {
                throw PlanError(line: line, "'\(name)' has fields: refer to one of them, e.g. {\(fields[0])}")
            }
            throw PlanError(line: line, "{\(name)} refers to a value that does not exist\(Plan.suggestion(name, known)); values here: \(known.joined(separator: ", "))")
        }
        if let i = visiting.firstIndex(of: name) {
            let cycle = (visiting[i...] + [name]).joined(separator: " → ")
            throw PlanError(line: values[visiting[i]]?.line, "values refer to each other in a cycle: \(cycle); one of them must not depend on the others")
        }
        visiting.append(name)
        let text = try substitute(value.template, line: value.line, quote: false, stageRefs: true)
        visiting.removeLast()
        resolved[name] = text
        return text
    }

    /// `template` with its references replaced; `quote`: shell-quote what goes in (a script).
    mutating func substitute(_ template: String, line: Int, quote: Bool, stageRefs: Bool) throws(PlanError) -> String {
        let chars = Array(template.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if stageRefs, c == "$", i + 1 < chars.count, chars[i + 1] == "(", let (stage, key, end) = Self.stageReference(chars, i) {
                out.append(contentsOf: try stageValue(stage, key, line: line).unicodeScalars)
                i = end
                continue
            }
            if c == "{" {
                // `{{name}}` is a literal `{name}`.
                if i + 1 < chars.count, chars[i + 1] == "{", let (name, end) = Self.reference(chars, i + 1), end < chars.count, chars[end] == "}" {
                    out.append("{")
                    out.append(contentsOf: name.unicodeScalars)
                    out.append("}")
                    i = end + 1
                    continue
                }
                // `${NAME}` belongs to the shell.
                if !(i > 0 && chars[i - 1] == "$"), let (name, end) = Self.reference(chars, i) {
                    let v = try resolve(name, from: line)
                    out.append(contentsOf: (quote ? Self.shellQuote(v) : v).unicodeScalars)
                    i = end
                    continue
                }
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    private mutating func stageValue(_ stage: String, _ key: String, line: Int) throws(PlanError) -> String {
        guard let s = stages.firstIndex(where: { $0.name == stage }) else {
            throw PlanError(line: line, "$(\(stage).\(key)) refers to a stage that does not exist\(Plan.suggestion(stage, stages.map(\.name))); stages: \(stages.map(\.name).joined(separator: ", "))")
        }
        guard s < stageIndex else {
            let which = s == stageIndex ? "this stage itself (use {\(key)})" : "a later stage (\(stage) comes after \(stages[stageIndex].name))"
            throw PlanError(line: line, "$(\(stage).\(key)) refers to \(which); a stage can use only the stages before it")
        }
        guard let v = earlier[s][key] else {
            throw PlanError(line: line, "$(\(stage).\(key)): stage \(stage) has no value '\(key)'\(Plan.suggestion(key, earlier[s].keys.sorted()))")
        }
        dependencies.insert(s)
        return v
    }

    /// `{name}` or `{name.field}` at `i` → the name and the index after `}`.
    static func reference(_ chars: [Unicode.Scalar], _ i: Int) -> (String, Int)? {
        var j = i + 1
        var name = String.UnicodeScalarView()
        var dots = 0
        while j < chars.count, chars[j] != "}" {
            let c = chars[j]
            if c == "." {
                dots += 1
                if dots > 1 || name.isEmpty || name.last == "." { return nil }
            } else if !(("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "_" || c == "-") {
                return nil
            }
            name.append(c)
            j += 1
        }
        guard j < chars.count, !name.isEmpty, name.last != "." else { return nil }
        return (String(name), j + 1)
    }

    /// `$(stage.key)` at `i` → stage, key and the index after `)`.
    static func stageReference(_ chars: [Unicode.Scalar], _ i: Int) -> (String, String, Int)? {
        var j = i + 2
        var text = String.UnicodeScalarView()
        while j < chars.count, chars[j] != ")" {
            text.append(chars[j])
            j += 1
        }
        guard j < chars.count else { return nil }
        let parts = String(text).split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, Plan.isName(parts[0]), !parts[1].isEmpty,
              parts[1].split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ Plan.isName(String($0)) }) else { return nil }
        return (parts[0], parts[1], j + 1)
    }

    /// Single-quoted for /bin/sh unless it is plainly safe.
    static func shellQuote(_ s: String) -> String {
        let safe = !s.isEmpty && s.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_-./:=+,@%".unicodeScalars.contains($0)
        }
        return safe ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
