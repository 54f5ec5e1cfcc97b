// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstdio>
int main() { std::puts("1..0 # SKIP placeholder: being written"); return 0; }
