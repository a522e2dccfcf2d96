# A stand-in for the few nixpkgs `lib` functions fleet's modules and package use, for the offline tests
# (Tests/HostTests/NixModulesTests.swift, NixPackageTests.swift): nothing here can fetch nixpkgs. Each function
# behaves like nixpkgs' for the arguments fleet gives it; option types are records the tests can read, not
# checks (the real module system checks them on a real host).
rec {
  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption = name: mkOption { default = false; type = types.bool; description = "Whether to enable ${name}."; };
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkRemovedOptionModule = path: message: { };
  literalExpression = text: { _type = "literalExpression"; inherit text; };

  types =
    let type = name: { _type = "type"; inherit name; }; in
    {
      bool = type "bool";
      str = type "str";
      port = type "port";
      path = type "path";
      package = type "package";
      strMatching = pattern: type "strMatching" // { inherit pattern; };
      nullOr = inner: type "nullOr" // { inherit inner; };
      enum = values: type "enum" // { inherit values; };
      listOf = inner: type "listOf" // { inherit inner; };
      nonEmptyListOf = inner: type "nonEmptyListOf" // { inherit inner; };
      ints.between = min: max: type "int" // { inherit min max; };
      submodule = module: type "submodule" // { inherit module; };
    };

  optional = condition: value: if condition then [ value ] else [ ];
  optionals = condition: values: if condition then values else [ ];
  optionalAttrs = condition: attrs: if condition then attrs else { };
  optionalString = condition: text: if condition then text else "";
  concatStringsSep = builtins.concatStringsSep;
  concatMapStringsSep = separator: f: list: builtins.concatStringsSep separator (map f list);
  concatLists = builtins.concatLists;
  mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (builtins.attrNames attrs);
  mapAttrs = builtins.mapAttrs;
  imap1 = f: list: builtins.genList (index: f (index + 1) (builtins.elemAt list index)) (builtins.length list);
  filterAttrsRecursive = predicate: attrs:
    builtins.listToAttrs (builtins.concatMap
      (name:
        let value = attrs.${name}; in
        if predicate name value then
          [{ inherit name; value = if builtins.isAttrs value then filterAttrsRecursive predicate value else value; }]
        else [ ])
      (builtins.attrNames attrs));
  recursiveUpdate = left: right:
    left // builtins.mapAttrs
      (name: value:
        if builtins.isAttrs value && builtins.isAttrs (left.${name} or null) && !(value ? _type)
        then recursiveUpdate left.${name} value else value)
      right;
  makeBinPath = packages: builtins.concatStringsSep ":" (map (package: "${package}/bin") packages);
  escapeShellArg = text: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] text}'";
  importJSON = path: builtins.fromJSON (builtins.readFile path);
  fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  versionAtLeast = left: right: builtins.compareVersions left right >= 0;
  platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  licenses.mit = { shortName = "mit"; };
}
