r"""Grading cases with expected verdicts, written as models write answers (after a `</think>`).

Each case: `kind`, `gold` (as a benchmark stores it: bare LaTeX, a number or a list of
parts), `completion`, `expected` (is the completion's answer the gold answer?), `why` (the
reason for the verdict), `hit_cap` (the completion was cut at the token cap, no EOS).

The kinds follow the failure kinds of issue 13 and the kinds math-verify's own test suite
asserts (its tests/test_all.py: notation, sets, relations, matrices, percentages, numbers);
the completions and verdicts are ours. Verdicts are about mathematics and about the rules of
SPEC ("Evaluation and analysis"): the answer phase is the text after the delimiter (the
whole text without one), and a completion cut at the cap counts only with a `\boxed{}`.
Used by `benchmarks/grading_agreement.py` and `tests/test_grading.py`.
"""

from __future__ import annotations

THINK = (
    "<think>\nLet me work through this. First 3 + 4 = 7, then 7 * 2 = 14. "
    "Wait, let me double-check: 14 - 2 = 12, and 12 / 3 = 4.\n</think>\n\n"
)

CASES: list[dict] = []


def case(kind: str, gold, answer: str, expected: bool, why: str, *, thinking: str = THINK,
         hit_cap: bool = False) -> None:
    CASES.append({"kind": kind, "gold": gold, "completion": thinking + answer, "expected": expected,
                  "why": why, "hit_cap": hit_cap})


# -- boxed answers in every notation ---------------------------------------------------------
K = "boxed"
case(K, r"\frac{1}{2}", r"The answer is $\boxed{0.5}$.", True, "0.5 = 1/2")
case(K, r"\frac{1}{2}", r"So the answer is $\boxed{\dfrac12}$.", True, "dfrac, unbraced: 1/2")
case(K, r"3\sqrt{13}", r"The distance is $\boxed{\sqrt{117}}$.", True, "sqrt(117) = 3 sqrt(13)")
case(K, r"\left( 3, \frac{\pi}{2} \right)", r"The polar coordinates are $\boxed{(3, \pi/2)}$.", True,
     "the same pair")
case(K, r"90^\circ", r"Hence the angle is $\boxed{90}$.", True, "90 degrees, unit dropped")
case(K, r"204_5", r"for a quotient of $\boxed{204_5}$.", True, "the same base-5 numeral")
case(K, r"(6,31,-1)", r"we find $(p,q,r) = \boxed{(6,31,-1)}.$", True, "the same triple")
case(K, r"1 \pm \sqrt{19}", r"By the quadratic formula, $x = \boxed{1 \pm \sqrt{19}}.$", True, "same roots")
case(K, r"\frac{14}{3}", r"$f(-2)+f(-1)+f(0)=2+\frac{5}{3}+1=\boxed{\frac{14}{3}}$", True, "14/3")
case(K, r"\frac{3}{56}", r"so $p(8) = \boxed{\frac{3}{57}}.$", False, "3/57 is not 3/56")
case(K, "2", r"Thus, there are $\boxed{3}$ distinct possible values for $B$.", False, "3 is not 2")
case(K, "[-4,0]", r"the values of $k$ are: \[ \boxed{[-4, 0]} \]", True, "the same interval")
case(K, r"(2, 12) \cup (12, 102)", r"Thus, the answer is $x \in \boxed{(2,12) \cup (12,102)}$", True,
     "the same union")
case(K, r"\begin{pmatrix} 0 & 3 \\ 0 & -1 \end{pmatrix}",
     r"The matrix is $\boxed{\begin{pmatrix} 0 & 3 \\ 0 & -1 \end{pmatrix}}$.", True, "same matrix")
case(K, r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
     r"The matrix is $\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}}$.", False, "one entry differs")
case(K, r"15\mbox{ cm}^2", r"the area is $$\frac{1}{2}\times 3 \times 10 = \boxed{15\mbox{ cm}^2}.$$", True,
     "15 cm^2")
case(K, "125", r"The distance is $\boxed{125\textnormal{ miles}}.$", True, "125, unit dropped")
case(K, r"28\%", r"making for a total loss of $\boxed{28\%}$.", True, "the same percentage")
case(K, r"x^2+2x+1", r"So the polynomial is $\boxed{(x+1)^2}$.", True, "(x+1)^2 expands to it")
case(K, r"\sqrt{2}+\sqrt{5}", r"The answer is $\boxed{\sqrt 2+\sqrt 5}$", True, "unbraced sqrt")
case(K, r"\frac{9}{4}\pi", r"Therefore $\boxed{\frac94\pi}$.", True, "9/4 pi")
case(K, r"\frac{1}{3}", r"The probability is $\boxed{0.33}$.", False, "0.33 is not 1/3")
case(K, "11111111100", r"The number is $\boxed{11,\! 111,\! 111,\! 100}$", True, "thousands separators")
case(K, "32349", r"The number is $\boxed{32, 349}$", False, "'32, 349' (comma and space) lists two numbers")
case(K, r"\text{Evelyn}", r"Therefore, $\boxed{\text{Evelyn}}$ is our answer.", True, "the same name")
case(K, r"2 \sin b \cos a", r"By sum-to-product, \[\sin (a + b) - \sin (a - b) = \boxed{2 \sin b \cos a}.\]",
     True, "the same expression")
case(K, r"\frac{\sqrt{3}}{2}", r"so $\sin 60^\circ = \boxed{\frac{1}{2}}$.", False, "1/2 is not sqrt(3)/2")
case(K, "-2", r"The root is $\boxed{2}$.", False, "wrong sign")
case(K, "5", r"The answer is $\boxed{5.0}$.", True, "5.0 = 5")
case(K, r"\frac{1}{12}", r"The answer is $\boxed{0.0833333333333333}$.", True, "1/12 to 16 digits")
case(K, r"\$32,\!348", r"She pays $\boxed{32348}$ dollars.", True, "the same amount")
case(K, "025", r"The answer is $\boxed{25}$.", True, "AIME style leading zero")
case(K, "073", r"The answer is $\boxed{\textbf{(073)}}$.", True, "AIME style, bold in parentheses")
case(K, "104", r"measuring gives $CE = \boxed{104.}$", True, "a sentence period inside the box")

# -- a final $...$ that is not a single number (no box) --------------------------------------
K = "latex_final"
case(K, "[0,1)", r"The domain is $[0,1)$.", True, "the same interval")
case(K, r"x \geq 5", r"Therefore $x \geq 5$ is the solution.", True, "the same inequality")
case(K, "[0,9)", r"The domain is $[0,1)$.", False, "other interval")
case(K, "(0,9)", r"So the range is $[0,9)$.", False, "closed at 0, the gold is open")
case(K, r"(-\infty, 2]", r"The solution set is $(-\infty, 2]$.", True, "the same interval")
case(K, r"\{1\pm\sqrt{5},-2\}", r"The roots of $P(x)$ are $\{1\pm\sqrt{5},-2\}$.", True, "the same set")
case(K, "y = 2x + 3", r"The line is $y = 2x+3$.", True, "the same line")
case(K, "y = 2x + 3", r"The line is $y = 3x+2$.", False, "another line")
case(K, r"\frac{\pi r}{h+r}", r"The ratio is $\frac{\pi r}{h+r}$.", True, "the same expression")
case(K, r"3\sqrt{2}", r"Thus the distance is $\sqrt{18}$.", True, "sqrt(18) = 3 sqrt(2)")
case(K, r"(1,\frac{9}{2})", r"The point is $(1,4.5)$.", True, "4.5 = 9/2")
case(K, r"\frac{x+2}{7}", r"We get $\frac{x}{7}+\frac{2}{7}$.", True, "the same expression")
case(K, r"-2 \le x \le 7", r"So $x \in [-2,7]$.", True, "the same set of x")
case(K, "(-6, 10)", r"The solution to the inequality is \( x \in (-6, 10) \).", True, "the same interval")
case(K, r"\frac{2}{3}", r"So the probability is \(\frac{2}{3}\).", True, "2/3")
case(K, "[-2,7]", r"The interval is $[-2, 6]$.", False, "other interval")
case(K, r"\tan^2(y)+1", r"This simplifies to $\sec^2(y)$.", True, "a trigonometric identity")
case(K, r"\frac{5}{3}", r"Solving, $b = \frac{5}{3}$.", True, "the same value")

# -- false positives of number fallbacks ------------------------------------------------------
K = "false_positive"
case(K, "2", r"So $x = \frac{1+\sqrt{5}}{2}$.", False, "the golden ratio, not 2")
case(K, "1", r"The set is $-[0,1)$.", False, "a set, not 1")
case(K, "4", r"The side is $4\sqrt{2}$.", False, "4 sqrt(2) is not 4")
case(K, "2", r"The area is $x^2$.", False, "an expression in x, not 2")
case(K, "5", r"The answer is $5x$.", False, "5x is not 5")
case(K, "10", r"The sum is $2^{10}$.", False, "1024, not 10")
case(K, "3", r"The answer is $\frac{3}{4}$.", False, "3/4, not 3")
case(K, "12", r"The answer is $12\pi$.", False, "12 pi, not 12")
case(K, "7", r"So $n \geq 7$.", False, "an inequality, not the number 7")
case(K, "1", r"The interval is $[0,1]$.", False, "an interval, not 1")
case(K, "2", r"It equals $\log_2 8$.", False, "log2(8) = 3")
case(K, "9", r"The answer is $\sqrt{9}$.", False, "sqrt(9) = 3")
case(K, "1", r"The probability is $1 - \frac{1}{e}$.", False, "1 - 1/e, not 1")
case(K, "6", r"We get $6!$ arrangements.", False, "6! = 720")
case(K, "4", r"The answer is the pair $(4, 5)$.", False, "a pair, not 4")
case(K, "2", r"The answer is $\frac{1}{2}$.", False, "1/2, not 2")
case(K, "3", r"The answer is $3^{2}$.", False, "9, not 3")
case(K, "12", r"So $\boxed{\text{none}}$. Note: a 12-inch ruler is enough.", False,
     "the box says none; 12 is a remark after it")

# -- several boxes ------------------------------------------------------------------------------
K = "several_boxes"
case(K, r"\{1,2,3\}", r"The values are \boxed{1} and \boxed{2} and \boxed{3}.", True, "the same set")
case(K, "1,2,3", r"The values are $\boxed{1}$, $\boxed{2}$, $\boxed{3}$.", True, "the same set")
case(K, "3", r"The values are \boxed{1} and \boxed{2} and \boxed{3}.", False, "three answers for one")
case(K, ["3", "-3"], r"so $x = \boxed{3}$ or $x = \boxed{-3}$", True, "both parts, one box each")
case(K, ["3", "-3"], r"The solutions are \boxed{x=3} \boxed{x=-3}", True, "both parts as equations")
case(K, ["3", "-3"], r"The solution is \boxed{3}.", False, "one part of two")
case(K, ["3", "-3"], r"The solutions are \boxed{3} and \boxed{3}.", False, "the same part twice")
case(K, ["3", "-3"], r"The solutions are \boxed{3, -3, 0}.", False, "an extra part")
case(K, "69, 84", r"The two numbers are \boxed{69} and \boxed{84}.", True, "both parts")
case(K, "69, 84", r"The two numbers are \boxed{69} and \boxed{85}.", False, "one part wrong")
case(K, ["(1,2)", "(3,4)"], r"The pairs are \boxed{(3,4), (1,2)}.", True, "both pairs, any order")
case(K, ["(1,2)", "(3,4)"], r"The pairs are \boxed{(1,2), (4,3)}.", False, "(4,3) is not (3,4)")
case(K, "1,-2", r"The integers are \boxed{-2} and \boxed{1}.", True, "both integers")
case(K, "5", r"First \boxed{4}. Wait, that is wrong: recomputing gives \boxed{5}.", True,
     "the last box is the answer")
case(K, "4", r"First \boxed{4}. Wait, that is wrong: recomputing gives \boxed{5}.", False,
     "the answer is the last box, 5")
case(K, "1,2", r"The answer is $\boxed{1,2}$.", True, "the same two numbers")

# -- "final answer" and "the answer is" phrases -------------------------------------------------
K = "final_answer"
MINERVA = (r"The interest earned is $0.04 \cdot 10,000 \cdot \frac{1}{2} = \boxed{200}$ So, after six "
           r"months, she has $10,000 + $200 = $10,200. Then $0.05 \cdot 10,200 \cdot \frac{1}{2} = "
           r"\boxed{255}$ So she has $10,200 + $255 = $10,455. Final Answer: The final answer is "
           r"$10,455$. I hope it is correct.")
case(K, "10455", MINERVA, True, "intermediate boxes, then the stated final answer 10,455")
case(K, "255", MINERVA, False, "255 is an intermediate result")
case(K, "34", r"Final Answer: The largest $n$ is 34.", True, "the stated final answer")
case(K, "27", r"Final Answer: The final answer is $27$. I hope it is correct.", True, "Minerva format")
case(K, r"\frac{3}{4}", "**Final Answer**\n\n$\\frac{3}{4}$", True, "the final expression")
case(K, "12", r"So the answer is 12 apples.", True, "after 'the answer is'")
case(K, "3", r"Thus the answer is $x=3$.", True, "x = 3")
case(K, r"\frac{1}{2}", r"The final answer is \(\frac{1}{2}\).", True, "1/2")
case(K, "17", r"**Final Answer:** 17", True, "17")
case(K, "18", r"The total cost is \$18.", True, "18 dollars")
case(K, "(-6, 10)", r"Final Answer: The final answer is \((-6, 10)\). I hope it is correct.", True, "interval")
case(K, "5", r"The answer is 5. Let me also note that 2+2=4.", True, "5 follows 'The answer is'")
case(K, "36", r"Therefore, the answer is $36$, since $6^2 = 36$ and $7^2=49$.", True, "36 is the answer")
case(K, "49", r"Therefore, the answer is $36$, since $6^2 = 36$ and $7^2=49$.", False, "49 is a remark")

# -- text answers ---------------------------------------------------------------------------------
K = "text"
case(K, r"\text{E}", r"The answer is $E$.", True, "choice E")
case(K, r"\text{(C)}", r"The answer is $\boxed{C}$.", True, "choice C")
case(K, "C", r"So the answer is $\boxed{\text{(C)}}.$", True, "choice C")
case(K, r"\text{odd}", r"Therefore the function is $odd$.", True, "the word odd")
case(K, "odd", r"So $f$ is \boxed{\text{odd}}.", True, "the word odd")
case(K, r"\text{even}", r"The function is $\text{odd}$.", False, "odd is not even")
case(K, "f(y) = y", r"So the only solution is $$f(y) = y$$", True, "the same function")
case(K, "f(x) = 2x", r"Hence $$f(x) = x^2$$", False, "another function")
case(K, r"12\text{ and }13",
     r"the sum is located between $\boxed{12 $ and $13 }. $ Final Answer: The final answer is "
     r"\"$12 $ and $13 $\". I hope it is correct.", True, "12 and 13, a box torn by dollars")
case(K, r"\text{Evelyn}", r"Therefore, $\boxed{\text{Briana}}$ is our answer.", False, "another name")
case(K, r"\text{(B)}", r"The answer is $\textbf{(B)}$.", True, "choice B in bold")
case(K, r"\text{(B)}", r"The answer is $\textbf{(D)}$.", False, "choice D")

# -- plain numbers, no LaTeX ------------------------------------------------------------------------
K = "plain_number"
case(K, "7425000", "The total is 7,425,000.", True, "thousands separators")
case(K, "1000.99", "It costs $1,000.99 in total.", True, "a currency amount")
case(K, "0.4", "The ratio is .4", True, "0.4")
case(K, "18", "She has 18 apples left.", True, "18")
case(K, "18", "She has 19 apples left.", False, "19")
case(K, "5", "x = 5", True, "x = 5")
case(K, "-3", "So x = -3.", True, "-3")
case(K, "3", "So x = -3.", False, "-3 is not 3")
case(K, "12", "The answer is 12.", True, "12")
case(K, r"28\%", "It drops by 28 percent.", True, "28 percent")
case(K, "2/3", "So P(A) = 2/3", True, "2/3")
case(K, "1000", "There are 1000.0 people.", True, "1000.0 = 1000")

# -- the answer phase only (SPEC: the text after the delimiter) ------------------------------------
K = "answer_phase"
T7 = "<think>\nSo x = 7, hence \\boxed{7}.\n</think>\n\n"
T8 = "<think>\nSo x = 8, hence \\boxed{8}.\n</think>\n\n"
case(K, "7", "I am not sure.", False, "the answer phase states no answer", thinking=T7)
case(K, "7", r"\boxed{8}", False, "the answer phase says 8", thinking=T7)
case(K, "7", r"\boxed{7}", True, "the answer phase says 7", thinking=T8)
case(K, "7", "", False, "an empty answer phase", thinking=T7)
case(K, "12", r"The answer is $\boxed{12}$.", True, "the answer phase says 12")
case(K, r"\frac{1}{2}", r"So the answer is $\frac{1}{3}$.", False, "the answer phase says 1/3",
     thinking="<think>\nMaybe $\\frac{1}{2}$.\n</think>\n\n")
case(K, "7", "So the final value is $\\boxed{7}$.", True, "no delimiter: the whole text is the answer phase",
     thinking="Thinking without a delimiter: 3 + 4 = 7. ")

# -- cut at the token cap (no EOS): a \boxed{} only -------------------------------------------------
K = "truncated"
case(K, "7", "", False, "a stop failure: thinking cut mid-sentence, no box", hit_cap=True,
     thinking="<think>\nWe start with x = 3. Add 4, so x = 7. Wait, let me double-check: x = 7")
case(K, "7", "", False, "demo-world style: every line ends 'x = d', but nothing was answered",
     hit_cap=True, thinking="<think>\nWe start with x = 2.\nDouble it, so x = 4.\nAdd 3, so x = 7")
case(K, "7", r"The final value of x is \boxed{7}. Let me also check the", True,
     "the box was written before the cut", hit_cap=True)
case(K, "7", "The final value of x is 7 and", False, "cut before any box", hit_cap=True)
case(K, "9", "", True, "no delimiter: the whole text; its box came before the cut", hit_cap=True,
     thinking="<think>\nSo the result is \\boxed{9}. Wait, maybe I should verify that again and again")
case(K, "3", r"So the answer is \boxed{5} and then", False, "the box says 5", hit_cap=True)
case(K, r"\frac{1}{2}", r"so $x = \frac{1}{2}$ and", False, "no box before the cut", hit_cap=True)
case(K, "7", "So the answer is 7.", True, "not cut: a plain number counts", hit_cap=False)

# -- relations: inequalities and equations -------------------------------------------------------
K = "relations"
case(K, "x < 3", r"We find that $x \lt 3$.", True, "the same inequality")
case(K, r"x \leq 2", r"Thus $x <= 2$ is our answer.", True, "the same inequality")
case(K, "x > 5", r"Therefore $x < 5$ is the solution.", False, "the opposite inequality")
case(K, r"x \geq 5", r"The solution is $x \leq 5$", False, "the opposite inequality")
case(K, r"x \leq 5", r"$5 \geq x$", True, "flipped, the same")
case(K, "x < 1", r"$-x > -1$", True, "negated, the same")
case(K, "x < 1", r"$x > -1$", False, "another inequality")
case(K, "11", r"Hence $x=11$.", True, "x = 11")
case(K, "k=1", r"So the answer is $1$.", True, "k = 1")
case(K, "2x+4y-3=0", r"The line is $y=-\frac{1}{2}x+\frac{3}{4}$", True, "the same line")
case(K, "a +3z = 0", r"We get $0$.", False, "0 is not the equation")
case(K, "x^2/4 + y^2/3 = 1", r"The ellipse is $x^2/16 + y^2/12 = 1/4$", True, "the same ellipse")

KINDS = list(dict.fromkeys(c["kind"] for c in CASES))
