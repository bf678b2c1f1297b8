"""The contract language's grammar (lark, LALR(1)): ``lang`` parses every contract with it. Kept as a Python
string so the language loads without reading a file (the package does no I/O); part of the enclave's measured
code like every file of ``node.contracts``."""

GRAMMAR = r'''// Keyswitch contract language (LALR(1)). See node/contracts/README.md.

start: header decl* stmt*

header: "contract" NAME

decl: "parties" NAME ("," NAME)*        -> parties_fixed
    | "parties" "*" ("min" INT)?        -> parties_any
    | "param" NAME ":" NAME             -> param

?stmt: "let" NAME "=" expr                              -> let
     | if_stmt
     | "for" NAME "in" expr ".." expr block             -> for_
     | "release" expr "[" expr "]" "to" expr ("when" expr)?  -> release
     | "complete" "when" expr                           -> complete
     | "refund" "when" expr                             -> refund

if_stmt: "if" expr block ("else" (block | if_stmt))?

block: "{" stmt* "}"

?expr: or_expr
     | "if" expr "then" expr "else" expr   -> cond

?or_expr: and_expr
        | or_expr "or" and_expr            -> or_
?and_expr: not_expr
         | and_expr "and" not_expr         -> and_
?not_expr: cmp
         | "not" not_expr                  -> not_
?cmp: sum
    | sum "==" sum                         -> eq
    | sum "!=" sum                         -> ne
    | sum "<" sum                          -> lt
    | sum "<=" sum                         -> le
    | sum ">" sum                          -> gt
    | sum ">=" sum                         -> ge
?sum: product
    | sum "+" product                      -> add
    | sum "-" product                      -> sub
?product: unary
        | product "*" unary                -> mul
        | product "/" unary                -> div
        | product "%" unary                -> mod
?unary: atom
      | "-" unary                          -> neg
?atom: INT                                 -> int_lit
     | STRING                              -> str_lit
     | "true"                              -> true
     | "false"                             -> false
     | NAME                                -> var
     | NAME "(" [expr ("," expr)*] ")"     -> call
     | "sum" "(" NAME "in" expr ".." expr ":" expr ")"      -> sum_of
     | "all" "(" NAME "in" expr ".." expr ":" expr ")"      -> all_of
     | "any" "(" NAME "in" expr ".." expr ":" expr ")"      -> any_of
     | "maximum" "(" NAME "in" expr ".." expr ":" expr ")"  -> maximum_of
     | "(" expr ")"

NAME: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9][0-9_]*/
STRING: /"[^"\\\n]*"/
COMMENT: /#[^\n]*/

%import common.WS
%ignore WS
%ignore COMMENT
'''
