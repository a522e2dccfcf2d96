public import TOMLKit

/// Typed look-ups in TOML tables that record a problem instead of failing at the first one, so that a
/// configuration file's every mistake is reported at once, each naming the file, the table and the key.
public struct TOMLReader {
    /// The file being read, prefixed to every problem.
    public let file: String
    public private(set) var problems: [String] = []

    public init(file: String) {
        self.file = file
    }

    /// Parses TOML text; a syntax error is reported as `file:line:column: reason`.
    ///
    /// A NUL character, raw or escaped (`\u0000`), is refused first: the parser underneath hands text on as C
    /// strings, so a raw NUL would silently drop the rest of the file, and an escaped one the rest of a value.
    public static func parse(_ text: String, file: String) -> Result<TOMLTable, TOMLSyntaxError> {
        if let line = lineWithNUL(in: text) {
            return .failure(
                TOMLSyntaxError(
                    description: "\(file):\(line): a NUL character (raw, or escaped as \\u0000), which fleet refuses: "
                        + "nothing in a configuration can hold one"))
        }
        do {
            return .success(try TOMLTable(string: text))
        } catch let error as TOMLParseError {
            return .failure(
                TOMLSyntaxError(
                    description: "\(file):\(error.source.begin.line):\(error.source.begin.column): \(error.description)"
                ))
        } catch {
            return .failure(TOMLSyntaxError(description: "\(file): \(error)"))
        }
    }

    /// The line number of the first NUL character or `\u0000`/`\U00000000` escape, if any. An escape is a
    /// backslash preceded by an even number of backslashes (`\\u0000` is a backslash and the text `u0000`).
    static func lineWithNUL(in text: String) -> Int? {
        var line = 1
        var backslashes = 0
        let bytes = Array(text.utf8)
        for (index, byte) in bytes.enumerated() {
            if byte == 0 { return line }
            if byte == UInt8(ascii: "\n") { line += 1 }
            if byte == UInt8(ascii: "\\") {
                backslashes += 1
                continue
            }
            defer { backslashes = 0 }
            guard backslashes % 2 == 1 else { continue }
            let rest = bytes[index...]
            if rest.starts(with: "u0000".utf8) || rest.starts(with: "U00000000".utf8) { return line }
        }
        return nil
    }

    public mutating func problem(_ text: String) {
        problems.append(text.hasPrefix(file) ? text : "\(file): \(text)")
    }

    public mutating func checkKeys(_ table: TOMLTable, allowed: [String], in context: String) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            problem("\(context): unknown key \(quoted(key)) (known keys: \(allowed.joined(separator: ", ")))")
        }
    }

    /// The tables of an array of tables (`[[name]]`), each with its context for messages (`[[name]] #1`) and its
    /// index; an element that is not a table is a problem and left out.
    public mutating func tables(of array: TOMLArray, named name: String) -> [(
        index: Int, context: String, table: TOMLTable
    )] {
        var tables: [(index: Int, context: String, table: TOMLTable)] = []
        for (index, element) in array.enumerated() {
            let context = "\(name) #\(index + 1)"
            guard let table = element.table else {
                problem("\(context) must be a table")
                continue
            }
            tables.append((index, context, table))
        }
        return tables
    }

    public mutating func table(_ table: TOMLTable, _ key: String, in context: String) -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let result = value.table else {
            problem("\(context): \(quoted(key)) must be a table")
            return nil
        }
        return result
    }

    public mutating func string(_ table: TOMLTable, _ key: String, in context: String) -> String? {
        guard let value = table[key] else { return nil }
        guard let result = value.string else {
            problem("\(context) key \(quoted(key)): expected a string, found \(value.type)")
            return nil
        }
        return result
    }

    public mutating func bool(_ table: TOMLTable, _ key: String, in context: String) -> Bool? {
        guard let value = table[key] else { return nil }
        guard let result = value.bool else {
            problem("\(context) key \(quoted(key)): expected true or false, found \(value.type)")
            return nil
        }
        return result
    }

    public mutating func integer(_ table: TOMLTable, _ key: String, in context: String, range: ClosedRange<Int>) -> Int?
    {
        guard let value = table[key] else { return nil }
        guard let result = value.int, range.contains(result) else {
            problem("\(context) key \(quoted(key)): expected an integer in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return result
    }

    public mutating func stringArray(_ table: TOMLTable, _ key: String, in context: String) -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else {
            problem("\(context) key \(quoted(key)): expected an array of strings, found \(value.type)")
            return nil
        }
        var result: [String] = []
        for element in array {
            guard let string = element.string else {
                problem(
                    "\(context) key \(quoted(key)): expected an array of strings, found an element of type \(element.type)"
                )
                return nil
            }
            result.append(string)
        }
        return result
    }

    /// A string that must be an absolute path without NUL bytes; anything else is a problem naming the key.
    public mutating func absolutePath(_ table: TOMLTable, _ key: String, in context: String) -> String? {
        guard let path = string(table, key, in: context) else { return nil }
        guard path.hasPrefix("/"), !path.contains("\0") else {
            problem("\(context) key \(quoted(key)): \(quoted(path)) must be an absolute path")
            return nil
        }
        return path
    }

    /// A command to run without a shell: an argument list whose first element is the program's absolute path.
    public mutating func command(_ table: TOMLTable, in context: String) -> [String]? {
        guard table["command"] != nil else {
            problem("\(context): the key \"command\" is required")
            return nil
        }
        guard let command = stringArray(table, "command", in: context) else { return nil }
        guard let program = command.first, program.hasPrefix("/") else {
            problem(
                "\(context) key \"command\": the first element must be an absolute path to the program (it runs "
                    + "without a shell)")
            return nil
        }
        return command
    }

    /// The `operation` key, one of ``Operation``'s values.
    public mutating func operation(_ table: TOMLTable, in context: String) -> Operation? {
        guard let text = string(table, "operation", in: context) else { return nil }
        guard let operation = Operation(rawValue: text) else {
            problem(
                "\(context) key \"operation\": \(quoted(text)) is not one of \(Operation.allCases.map(\.rawValue).joined(separator: ", "))"
            )
            return nil
        }
        return operation
    }
}

/// A TOML file that does not parse; the description names the file, line and column.
public struct TOMLSyntaxError: Error, CustomStringConvertible, Sendable {
    public let description: String
}
