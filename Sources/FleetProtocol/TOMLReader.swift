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
    public static func parse(_ text: String, file: String) -> Result<TOMLTable, TOMLSyntaxError> {
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

    public mutating func problem(_ text: String) {
        problems.append(text.hasPrefix(file) ? text : "\(file): \(text)")
    }

    public mutating func checkKeys(_ table: TOMLTable, allowed: [String], in context: String) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            problem("\(context): unknown key \(quoted(key)) (known keys: \(allowed.joined(separator: ", ")))")
        }
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
