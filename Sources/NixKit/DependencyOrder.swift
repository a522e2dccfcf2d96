/// Store paths ordered so that each comes after every path it refers to: the order in which a closure can be
/// substituted piece by piece, each piece complete once the pieces before it are in the store.
public enum DependencyOrder {
    /// `references` (a path to the paths it refers to) in dependencies-first order. A reference that is not a
    /// key is outside the set (already valid) and is left out; a path's reference to itself is ignored. Store
    /// paths cannot refer to each other in a cycle (each one's hash covers its references'), so none is handled
    /// beyond not looping. Ties go by name, so the order is the same every time.
    public static func dependenciesFirst(_ references: [String: [String]]) -> [String] {
        var order: [String] = []
        order.reserveCapacity(references.count)
        var placed: Set<String> = []
        var entered: Set<String> = []
        for root in references.keys.sorted() where !placed.contains(root) {
            // An explicit stack: a closure's depth is not bounded by anything the server controls.
            var stack: [(path: String, next: Int, children: [String])] = []
            func enter(_ path: String) {
                entered.insert(path)
                let children = (references[path] ?? []).filter { $0 != path && references[$0] != nil }.sorted()
                stack.append((path, 0, children))
            }
            enter(root)
            while let top = stack.last {
                if top.next < top.children.count {
                    let child = top.children[top.next]
                    stack[stack.count - 1].next += 1
                    if !placed.contains(child), !entered.contains(child) { enter(child) }
                } else {
                    stack.removeLast()
                    placed.insert(top.path)
                    order.append(top.path)
                }
            }
        }
        return order
    }
}
