/// Everything that can be wrong with a manifest, a key or a name exchanged between server and host.
public enum ProtocolError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidHostName(String)
    case malformedKey(String)
    case malformedManifest(String)
    case untrustedSigner(found: String, trusted: [String])
    case badSignature(keyName: String)

    public var description: String {
        switch self {
        case .invalidHostName(let name):
            return "invalid host name \(quoted(name)): host names must match \(HostName.rule)"
        case .malformedKey(let reason):
            return "malformed key: \(reason)"
        case .malformedManifest(let reason):
            return "malformed manifest: \(reason)"
        case .untrustedSigner(let found, let trusted):
            return
                "manifest is signed by key \(quoted(found)), which is not trusted (trusted: \(trusted.map(quoted).joined(separator: ", ")))"
        case .badSignature(let keyName):
            return
                "manifest signature does not verify with key \(quoted(keyName)): it was altered or signed by another key"
        }
    }
}

/// Quotes a value for an error message, escaping control characters so hostile input cannot forge lines.
public func quoted(_ value: String) -> String {
    var result = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f: result += "\\u{\(String(scalar.value, radix: 16))}"
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
