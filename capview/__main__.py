from capview.cli import main

raise SystemExit(main())
