import MeshCore

/// A sweep before expansion (DESIGN.md §7): a command template, fixed values, axes whose
/// Cartesian product makes the combinations, and stages, each run for every combination.
public struct Plan: Sendable {
    public enum Command: Sendable {
        /// A shell script (`script:` in a plan): substituted values are shell-quoted; it runs under /bin/sh -c.
        case script(String, line: Int)
        /// A program and its arguments (`mesh submit --matrix … -- CMD`): values are substituted as
        /// they are, except into the script of `sh -c`, where they are shell-quoted.
        case argv([String])
    }

    /// A named value; its text may refer to other values (`{width}`) and to earlier stages (`$(pretrain.model_id)`).
    public struct Value: Sendable {
        public var name: String
        public var template: String
        public var line: Int

        public init(_ name: String, _ template: String, line: Int = 0) {
            self.name = name
            self.template = template
            self.line = line
        }
    }

    /// A list in the sweep: one choice per combination; a choice sets one value, or several
    /// (`optset.lr`, `optset.wd`) when the list holds mappings.
    public struct Axis: Sendable {
        public var name: String
        public var choices: [[Value]]
        public var line: Int

        public init(name: String, choices: [[Value]], line: Int = 0) {
            self.name = name
            self.choices = choices
            self.line = line
        }

        func label(_ choice: Int) -> String {
            let values = choices[choice]
            if values.count == 1 && values[0].name == name { return values[0].template }
            return values.map { "\($0.name.dropFirst(name.count + 1))=\($0.template)" }.joined(separator: ",")
        }
    }

    public struct Stage: Sendable {
        public var name: String
        public var values: [Value]
        public var resources: ResourceOptions
        public var line: Int

        public init(name: String, values: [Value] = [], resources: ResourceOptions = ResourceOptions(), line: Int = 0) {
            self.name = name
            self.values = values
            self.resources = resources
            self.line = line
        }
    }

    public var command: Command
    public var fixed: [Value]
    public var axes: [Axis]
    /// Never empty: a plan without `stages` has one, named `main`.
    public var stages: [Stage]
    public var resources: ResourceOptions

    public init(command: Command, fixed: [Value] = [], axes: [Axis] = [], stages: [Stage] = [], resources: ResourceOptions = ResourceOptions()) {
        self.command = command
        self.fixed = fixed
        self.axes = axes
        self.stages = stages.isEmpty ? [Stage(name: Plan.defaultStage)] : stages
        self.resources = resources
    }

    public static let defaultStage = "main"

    /// How many combinations of the axes there are (saturating: a plan can ask for absurdly many).
    public var combinations: Int {
        axes.reduce(1) { n, a in n.multipliedReportingOverflow(by: a.choices.count).overflow ? .max : n * a.choices.count }
    }

    /// How many cells (jobs before deduplication) the plan makes.
    public var cellCount: Int {
        let (n, overflow) = combinations.multipliedReportingOverflow(by: stages.count)
        return overflow ? .max : n
    }
}

/// Resource options that may appear at sweep or stage level; a stage's override the sweep's.
public struct ResourceOptions: Sendable, Equatable {
    public var nodeClass: String?
    public var gpus: Int?
    public var slots: Int?
    public var timeoutSeconds: UInt64?
    public var retries: Int?
    public var results: [String]?

    public init(nodeClass: String? = nil, gpus: Int? = nil, slots: Int? = nil, timeoutSeconds: UInt64? = nil, retries: Int? = nil, results: [String]? = nil) {
        self.nodeClass = nodeClass
        self.gpus = gpus
        self.slots = slots
        self.timeoutSeconds = timeoutSeconds
        self.retries = retries
        self.results = results
    }

    public static let keys: [String] = ["class", "gpus", "slots", "timeout", "retries", "results"]

    /// These options, with `base` filling what they leave unset.
    public func over(_ base: ResourceOptions) -> ResourceOptions {
        ResourceOptions(nodeClass: nodeClass ?? base.nodeClass, gpus: gpus ?? base.gpus, slots: slots ?? base.slots,
                        timeoutSeconds: timeoutSeconds ?? base.timeoutSeconds, retries: retries ?? base.retries, results: results ?? base.results)
    }
}

/// A problem with a plan: where (a line of the file, when there is one) and what to do.
public struct PlanError: Error, Equatable, CustomStringConvertible {
    public var line: Int?
    public var message: String

    /// Line 0 is no line (a matrix from the command line has none).
    public init(line: Int?, _ message: String) {
        self.line = line == 0 ? nil : line
        self.message = message
    }

    public var description: String { line.map { "line \($0): \(message)" } ?? message }
}
