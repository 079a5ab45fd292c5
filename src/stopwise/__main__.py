from stopwise.cli import main

raise SystemExit(main())
