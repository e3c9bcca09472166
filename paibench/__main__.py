from paibench.cli import main

raise SystemExit(main())
