/// Either a run goes on with a value, or it is done with a result (already reported where it should be): what
/// each step of a run hands back to ``ClientRun``.
enum Step<Value> {
    case next(Value)
    case done(RunResult)
}
